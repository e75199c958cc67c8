//! `synapse-sample-model FILE`: writes the sample ONNX classifier (`x[N,4] -> logits[N,3]`)
//! used by the demo's ONNX function, and prints its SHA-256.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: synapse-sample-model FILE");
        std::process::exit(2);
    };
    let bytes = synapse_agent::runtime::sample_model::encode();
    if let Err(e) = std::fs::write(&path, &bytes) {
        eprintln!("synapse-sample-model: writing {path}: {e}");
        std::process::exit(1);
    }
    println!("{}", synapse_agent::runtime::onnx::sha256_hex(&bytes));
}
