//! Compiles the .proto files under `proto/` with protox (pure Rust, no protoc binary): prost
//! messages for all of them, tonic server traits for the Thanos services.

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
    tonic_prost_build::configure().build_client(false).build_server(true).compile_fds(fds)?;
    Ok(())
}
