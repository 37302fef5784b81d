//! etcd's answer to a request message over the receive limit (`--max-request-bytes` plus 512 KiB
//! of gRPC overhead): grpc-go's `ResourceExhausted` "grpc: received message larger than max
//! (N vs. M)". tonic refuses such a message itself, before any handler sees it, as `OutOfRange`
//! "Error, decoded message length too large: found N bytes, the limit is: M bytes"; this layer
//! rewrites that status (a headers-only response) into etcd's. Any other response passes
//! untouched. Real builds only: the simulator's transport does not encode messages.

use std::task::{Context, Poll};

use futures::future::{FutureExt, Map};
use tonic::{Code, Status};

/// Wraps the client API's services in [`Oversize`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OversizeLayer;

impl<S> tower_layer::Layer<S> for OversizeLayer {
    type Service = Oversize<S>;

    fn layer(&self, inner: S) -> Oversize<S> {
        Oversize(inner)
    }
}

/// A service whose "message too large" refusals read as etcd's.
#[derive(Clone, Debug)]
pub struct Oversize<S>(S);

type Rewrite<B, E> = fn(Result<http::Response<B>, E>) -> Result<http::Response<B>, E>;

impl<S, Request, B> tower_service::Service<Request> for Oversize<S>
where
    S: tower_service::Service<Request, Response = http::Response<B>>,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = Map<S::Future, Rewrite<B, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let rewrite: Rewrite<B, S::Error> = |response| response.map(as_etcd);
        self.0.call(request).map(rewrite)
    }
}

fn as_etcd<B>(mut response: http::Response<B>) -> http::Response<B> {
    let Some(status) = Status::from_header_map(response.headers()) else { return response };
    if status.code() != Code::OutOfRange {
        return response;
    }
    let Some((found, limit)) = tonic_too_large(status.message()) else { return response };
    let etcd = Status::resource_exhausted(format!("grpc: received message larger than max ({found} vs. {limit})"));
    if etcd.add_header(response.headers_mut()).is_err() {
        tracing::warn!("could not rewrite a message-too-large status");
    }
    response
}

/// The sizes in tonic's message for a request over the limit.
fn tonic_too_large(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix("Error, decoded message length too large: found ")?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_with(status: Status) -> http::Response<()> {
        let mut response = http::Response::new(());
        status.add_header(response.headers_mut()).unwrap();
        response
    }

    #[test]
    fn tonic_refusal_of_a_large_message_reads_as_grpc_go() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 2097167 bytes, the limit is: 2097152 bytes",
        );
        let rewritten = Status::from_header_map(as_etcd(response_with(tonic)).headers()).unwrap();
        assert_eq!(rewritten.code(), Code::ResourceExhausted);
        assert_eq!(rewritten.message(), "grpc: received message larger than max (2097167 vs. 2097152)");
    }

    #[test]
    fn other_statuses_pass_untouched() {
        for status in [
            Status::out_of_range("etcdserver: mvcc: required revision has been compacted"),
            Status::out_of_range("Error, decoded message length too large: found many bytes, the limit is: 1 bytes"),
            Status::invalid_argument("Error, decoded message length too large: found 2 bytes, the limit is: 1 bytes"),
        ] {
            let passed = Status::from_header_map(as_etcd(response_with(status.clone())).headers()).unwrap();
            assert_eq!((passed.code(), passed.message()), (status.code(), status.message()));
        }
        let ok = as_etcd(http::Response::new(()));
        assert!(ok.headers().is_empty());
    }
}
