//! Compiles the .proto files under `proto/` with protox (pure Rust, no protoc binary): prost
//! messages for all of them, tonic server traits and clients for the Thanos services. The
//! clients are generic over the transport (no `connect` constructor), so this crate needs no
//! tonic transport feature: a caller brings its own channel (the load generator uses tonic's).
//! The Store server is generated a second time with its Series responses as frames the server
//! encodes itself (`encoded`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "prometheus/types.proto",
        "prometheus/remote.proto",
        "prometheus/write_v2.proto",
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
    tonic_prost_build::configure()
        .build_client(true)
        .build_transport(false)
        .build_server(true)
        .compile_fds(fds.clone())?;
    // The Store server once more, answering Series and LabelValues with messages its caller
    // encoded itself (`encoded::Encoded`); every other type is the one generated above.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("encoded");
    std::fs::create_dir_all(&out)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&out)
        .extern_path(".prometheus", "crate::prometheus")
        .extern_path(".thanos", "crate::thanos")
        .extern_path(".thanos.SeriesResponse", "crate::encoded::Encoded")
        .extern_path(".thanos.LabelValuesResponse", "crate::encoded::Encoded")
        .compile_fds(fds)?;
    Ok(())
}
