//! Instructions per operation, partition canister against the bare-map baseline, on the
//! testbed with the wasm from `scripts/build-wasm.sh`.
//!
//! `cargo run --release -p flotilla-testbed --bin testbed-bench -- [--items N] [--samples N]`

use flotilla_testbed::bench::{profile, run, upgrade_cost, BenchConfig};
use std::path::PathBuf;
use std::time::Instant;

fn wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm")
        .join(format!("{name}.wasm.gz"));
    std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!(
            "{}: {e}. Build the canister wasm first: scripts/build-wasm.sh",
            path.display()
        );
        std::process::exit(2)
    })
}

fn main() {
    let mut cfg = BenchConfig::default();
    let mut want_profile = false;
    let mut upgrade_from: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> usize {
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("{what} needs a number");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--items" => cfg.items = num("--items"),
            "--samples" => cfg.samples = num("--samples"),
            "--chunks" => cfg.chunks = num("--chunks"),
            "--profile" => want_profile = true,
            "--upgrade-from" => upgrade_from = args.next().map(PathBuf::from),
            _ => {
                eprintln!(
                    "usage: testbed-bench [--items N] [--samples N] [--chunks N] [--profile] [--upgrade-from OLD_PARTITION_WASM]"
                );
                std::process::exit(2)
            }
        }
    }
    if want_profile {
        // The same code with its name section: the raw cargo output before ic-wasm shrink.
        let raw = |n: &str| {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/wasm32-unknown-unknown/canister")
                .join(format!("{n}.wasm"));
            std::fs::read(&p).unwrap_or_else(|e| {
                eprintln!("{}: {e}. Run scripts/build-wasm.sh first", p.display());
                std::process::exit(2)
            })
        };
        let part = raw("flotilla_partition_canister");
        let bare = raw("flotilla_bench_map_canister");
        for p in profile(&part, &bare, cfg) {
            println!("{}", p.markdown(15));
        }
        return;
    }
    if let Some(old) = upgrade_from {
        let from = std::fs::read(&old).unwrap_or_else(|e| {
            eprintln!("{}: {e}", old.display());
            std::process::exit(2)
        });
        let c = upgrade_cost(
            &from,
            &wasm("partition"),
            &wasm("bench-map"),
            cfg.items,
            true,
        );
        println!(
            "{} items put with an op id each: upgrade from {} to this build {} instructions, \
             this build to itself {} instructions (limit 300,000,000,000); retries answered \
             their first outcome after both",
            c.items,
            old.display(),
            c.from_to,
            c.to_to
        );
        return;
    }
    let (part, bare) = (wasm("partition"), wasm("bench-map"));
    let started = Instant::now();
    let t = run(&part, &bare, cfg, true);
    println!(
        "{} items, {}-byte keys, {}-byte values; mean instructions per message over {} messages\n",
        t.config.items, t.config.key_bytes, t.config.value_bytes, t.config.samples
    );
    print!("{}", t.markdown());
    println!("\nSystem API profile (mean per message):\n");
    print!("{}", t.profile_markdown());
    println!(
        "\nexport chunk: {:.0} items, {:.0} reply bytes on average; stable memory: partition {} B, bare map {} B; run took {:.0} s",
        t.chunk_items,
        t.chunk_bytes,
        t.partition_stable_bytes,
        t.bare_stable_bytes,
        started.elapsed().as_secs_f64()
    );
}
