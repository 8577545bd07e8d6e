//! Compiles the .proto files under `proto/` with protox (pure Rust, no protoc binary): prost
//! messages for all of them, tonic server traits and clients for the Thanos services. The
//! clients are generic over the transport (no `connect` constructor), so this crate needs no
//! tonic transport feature: a caller brings its own channel (the load generator uses tonic's).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "prometheus/types.proto",
        "prometheus/remote.proto",
        "thanos/labels.proto",
        "thanos/store.proto",
        "thanos/info.proto",
        "thanos/status.proto",
        "thanos/exemplars.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure().build_client(true).build_transport(false).build_server(true).compile_fds(fds)?;
    Ok(())
}
