//! Generates the Rust types and gRPC stubs from `proto/mpp/**.proto` with a
//! vendored `protoc`, so a fresh clone builds with cargo alone.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts are single-threaded; setting PROTOC here is the
    // documented way to point prost-build at a protoc binary.
    std::env::set_var("PROTOC", protoc);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let files = [
        "proto/mpp/v1/event.proto",
        "proto/mpp/v1/registry.proto",
        "proto/mpp/v1/hub.proto",
        "proto/mpp/v1/verdicts.proto",
        "proto/mpp/v1/dukcapil.proto",
        "proto/mpp/v1/imigrasi.proto",
        "proto/mpp/v1/bpn.proto",
        "proto/mpp/v1/pln.proto",
        "proto/mpp/v1/pdam.proto",
        "proto/mpp/v1/bank.proto",
        "proto/mpp/v1/dpmptsp.proto",
        "proto/mpp/v1/frontoffice.proto",
    ];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("mpp_descriptor.bin"))
        .compile_protos(&files, &["proto"])?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
