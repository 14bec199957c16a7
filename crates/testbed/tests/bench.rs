//! The instruction benchmark (`flotilla_testbed::bench`) with the real wasm built by
//! `scripts/build-wasm.sh`.

use std::path::PathBuf;

fn wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm")
        .join(format!("{name}.wasm.gz"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the canister wasm first: scripts/build-wasm.sh",
            path.display()
        )
    })
}

/// The instruction benchmark on a small map: it runs, and its figures are sane. (The full
/// 100,000-item table: `cargo run -p flotilla-testbed --bin testbed-bench`.)
#[test]
fn bench_runs_on_a_small_map() {
    use flotilla_testbed::bench::{run, BenchConfig};
    let cfg = BenchConfig {
        items: 2000,
        samples: 10,
        chunks: 1,
        ..BenchConfig::default()
    };
    let t = run(&wasm("partition"), &wasm("bench-map"), cfg, false);
    println!("{}", t.markdown());
    for r in &t.rows {
        for f in [r.partition, r.bare].into_iter().flatten() {
            assert!(f.instructions > 1000.0, "{}: {f:?}", r.op);
        }
    }
    assert!(t.chunk_items >= 2000.0);
}
