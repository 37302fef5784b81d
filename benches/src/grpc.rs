//! A lean gRPC unary call over one HTTP/2 connection, for the request loads (`put`, `range`,
//! `txn-put`).
//!
//! Why not tonic's client here: hyper's HTTP/2 client writes a request's HEADERS before it will
//! send its body (it waits for the stream to open before taking flow-control capacity), and its
//! body's end as a frame of its own, so each unary request cost the tool three socket writes
//! (`writev` of 32, 283 and 9 bytes for a put) and two extra task hand-offs. etcd's Go client
//! writes HEADERS and DATA together. Here the request's DATA frame, carrying END_STREAM, is queued
//! with its HEADERS before the connection task runs, so they leave in one write (1.00 `writev` per
//! put at 100 clients on 10 connections, was 2.08), as from etcd's own `benchmark` tool. The
//! streaming loads (`watch-latency`, `lease-keepalive`) keep tonic.
//!
//! The wire format is gRPC's: a POST to `/package.Service/Method` with `content-type:
//! application/grpc` and `te: trailers`; the message framed as a 1-byte compression flag (0) and
//! a 4-byte big-endian length; the outcome in the `grpc-status` and `grpc-message` trailers (or
//! headers, for a response without a body).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, Request, Uri};
use prost::Message;
use tokio::net::TcpStream;

use crate::driver::RequestError;

/// The Kv service's methods the loads call.
pub const KV_PUT: &str = "/etcdserverpb.KV/Put";
pub const KV_RANGE: &str = "/etcdserverpb.KV/Range";
pub const KV_TXN: &str = "/etcdserverpb.KV/Txn";

/// gRPC's length-prefixed message header: compression flag and length.
const FRAME_HEADER_BYTES: usize = 5;

/// Largest response accepted (etcd's own client default is 2 GiB; a load's responses are small).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// One HTTP/2 connection; clones share it, each with its own handle for opening streams.
#[derive(Clone)]
pub struct Connection {
    send: h2::client::SendRequest<Bytes>,
    authority: http::uri::Authority,
}

impl Connection {
    /// Connects to `url` (`http://host:port`) and starts the connection's task.
    pub async fn open(url: &str, timeout: Duration) -> Result<Connection, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
        if uri.scheme_str().is_some_and(|scheme| scheme != "http") {
            return Err(format!("scheme {:?} not supported (plain http only)", uri.scheme_str().unwrap_or("")));
        }
        let authority = uri.authority().cloned().ok_or_else(|| "no host:port".to_string())?;
        let port = authority.port_u16().unwrap_or(80);
        let connect = async {
            let tcp = TcpStream::connect((authority.host(), port)).await.map_err(|e| e.to_string())?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            h2::client::handshake(tcp).await.map_err(|e| e.to_string())
        };
        let (send, connection) =
            tokio::time::timeout(timeout, connect).await.map_err(|_| format!("no connection within {timeout:?}"))??;
        tokio::spawn(async move {
            // A broken connection fails the requests on it; they are counted there.
            let _ = connection.await;
        });
        Ok(Connection { send, authority })
    }

    /// Calls `method` with `request` and decodes its response.
    pub async fn unary<Req: Message, Resp: Message + Default>(
        &mut self,
        method: &'static str,
        request: &Req,
    ) -> Result<Resp, RequestError> {
        let body = frame(request);
        let uri = Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(method)
            .build()
            .map_err(|e| unexpected(format!("request URI: {e}")))?;
        let head = Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .map_err(|e| unexpected(format!("request head: {e}")))?;
        std::future::poll_fn(|cx| self.send.poll_ready(cx)).await.map_err(transport)?;
        let (response, mut stream) = self.send.send_request(head, false).map_err(transport)?;
        stream.send_data(body, true).map_err(transport)?;
        let response = response.await.map_err(transport)?;
        let (parts, mut recv) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(RequestError::Status {
                code: tonic::Code::Unknown,
                message: format!("HTTP status {}", parts.status),
            });
        }
        if let Some(status) = grpc_status(&parts.headers) {
            // A response with no body: its status comes in the headers.
            return Err(status.unwrap_or_else(|| unexpected("grpc-status 0 without a message".to_string())));
        }
        let mut data = BytesMut::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(transport)?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            if data.len() + chunk.len() > MAX_RESPONSE_BYTES + FRAME_HEADER_BYTES {
                return Err(unexpected(format!("response larger than {MAX_RESPONSE_BYTES} bytes")));
            }
            data.extend_from_slice(&chunk);
        }
        let trailers = recv.trailers().await.map_err(transport)?.unwrap_or_default();
        match grpc_status(&trailers) {
            Some(None) => unframe(data.freeze()),
            Some(Some(status)) => Err(status),
            None => Err(unexpected("response without grpc-status".to_string())),
        }
    }
}

/// `message` as one gRPC length-prefixed frame.
fn frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(FRAME_HEADER_BYTES + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    message.encode_raw(&mut buf);
    buf.freeze()
}

/// The one message of a unary response.
fn unframe<Resp: Message + Default>(mut data: Bytes) -> Result<Resp, RequestError> {
    if data.len() < FRAME_HEADER_BYTES {
        return Err(unexpected(format!("response of {} bytes has no gRPC frame", data.len())));
    }
    let compressed = data.get_u8();
    let len = data.get_u32() as usize;
    if compressed != 0 {
        return Err(unexpected("compressed response (none was asked for)".to_string()));
    }
    if len != data.len() {
        return Err(unexpected(format!("gRPC frame says {len} bytes, {} came", data.len())));
    }
    Resp::decode(data).map_err(|e| unexpected(format!("response does not decode: {e}")))
}

/// The call's outcome from `grpc-status`/`grpc-message`: `None` if absent, `Some(None)` for OK,
/// `Some(Some(error))` otherwise. Not tonic's `Status::from_header_map`: it copies the whole header
/// map on every call (this runs once per response) and panics on a malformed
/// `grpc-status-details`, which a load tool pointed at any endpoint must survive.
fn grpc_status(headers: &HeaderMap) -> Option<Option<RequestError>> {
    let code = headers.get("grpc-status")?;
    let code = code.to_str().ok().and_then(|c| c.parse::<i32>().ok()).unwrap_or(tonic::Code::Unknown as i32);
    if code == 0 {
        return Some(None);
    }
    let message = headers.get("grpc-message").map(|m| percent_decode(m.as_bytes())).unwrap_or_default();
    Some(Some(RequestError::Status { code: tonic::Code::from(code), message }))
}

/// gRPC percent-encodes `grpc-message` (`%XX` for bytes outside printable ASCII and `%`).
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn transport(error: h2::Error) -> RequestError {
    RequestError::Status { code: tonic::Code::Unavailable, message: error.to_string() }
}

fn unexpected(what: String) -> RequestError {
    RequestError::Unexpected(what)
}

#[cfg(test)]
mod tests {
    use detcd_proto::etcdserverpb::{PutRequest, PutResponse, ResponseHeader};
    use http::HeaderValue;

    use super::*;

    #[test]
    fn a_message_round_trips_through_its_frame() {
        let response =
            PutResponse { header: Some(ResponseHeader { revision: 7, ..Default::default() }), prev_kv: None };
        let framed = frame(&response);
        assert_eq!(framed[0], 0, "not compressed");
        assert_eq!(u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize, framed.len() - 5);
        assert_eq!(unframe::<PutResponse>(framed).unwrap(), response);
    }

    #[test]
    fn a_bad_frame_is_an_unexpected_response() {
        let framed = frame(&PutRequest { key: b"k".to_vec(), ..Default::default() });
        let short = framed.slice(..framed.len() - 1);
        let too_long = Bytes::from([framed.as_ref(), b"x"].concat());
        let mut compressed = framed.to_vec();
        compressed[0] = 1;
        for (bad, what) in [
            (Bytes::from_static(b"\0\0"), "has no gRPC frame"),
            (short, "gRPC frame says"),
            (too_long, "gRPC frame says"),
            (Bytes::from(compressed), "compressed"),
        ] {
            match unframe::<PutRequest>(bad) {
                Err(RequestError::Unexpected(text)) => assert!(text.contains(what), "{text:?} should say {what:?}"),
                other => panic!("expected an unexpected-response error, got {other:?}"),
            }
        }
    }

    #[test]
    fn grpc_status_reads_code_and_percent_decoded_message() {
        let mut headers = HeaderMap::new();
        assert!(grpc_status(&headers).is_none(), "no status yet");
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(matches!(grpc_status(&headers), Some(None)));
        headers.insert("grpc-status", HeaderValue::from_static("3"));
        headers.insert("grpc-message", HeaderValue::from_static("etcdserver: request is too large%21 100%25"));
        match grpc_status(&headers) {
            Some(Some(RequestError::Status { code, message })) => {
                assert_eq!(code, tonic::Code::InvalidArgument);
                assert_eq!(message, "etcdserver: request is too large! 100%");
            }
            other => panic!("expected a status, got {other:?}"),
        }
        headers.insert("grpc-status", HeaderValue::from_static("banana"));
        assert!(matches!(grpc_status(&headers), Some(Some(RequestError::Status { code: tonic::Code::Unknown, .. }))));
    }

    #[test]
    fn percent_decoding_leaves_malformed_escapes_alone() {
        assert_eq!(percent_decode(b"a%2"), "a%2");
        assert_eq!(percent_decode(b"%zz%41"), "%zzA");
        assert_eq!(percent_decode(b"%E2%9C%93"), "\u{2713}");
    }
}
