//! Generates the Rust code of every `.proto` file under `proto/`, for both worlds:
//! madsim-tonic-build writes the real tonic code to `OUT_DIR` and the simulated code to
//! `OUT_DIR/sim`; `tonic::include_proto!` picks one according to `cfg(madsim)`.
//!
//! protoc comes from `protoc-bin-vendored`, so a fresh machine needs no system protoc.

use std::error::Error;
use std::path::{Path, PathBuf};

/// Root of the .proto tree; it is also the single include path, so imports read
/// `import "mvccpb/kv.proto";`.
const PROTO_ROOT: &str = "proto";

fn main() -> Result<(), Box<dyn Error>> {
    let root = Path::new(PROTO_ROOT);
    let mut protos = Vec::new();
    collect_protos(root, &mut protos)?;
    protos.sort();
    if protos.is_empty() {
        return Err(format!("no .proto files under {}", root.display()).into());
    }

    // prost-build reads the protoc location from PROTOC. Edition 2021: set_var is safe here,
    // and the build script is single-threaded at this point.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);

    // Watch the whole tree (cargo recurses into directories), so new files get compiled.
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    println!("cargo:rerun-if-changed=build.rs");

    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .compile_protos(&protos, &[root])?;
    Ok(())
}

/// Appends every `.proto` file under `dir`, recursively.
fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Box<dyn Error>> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
