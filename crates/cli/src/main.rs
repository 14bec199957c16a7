//! `flotilla`: the demo (an embedded, simulated Flotilla deployment), the data commands
//! against a deployment (over ic-agent), the simulator swarm and the benchmarks. Every failure is one line saying what to do, with a non-zero exit code.

mod bench;
mod data;
#[cfg(test)]
mod data_tests;
mod demo;
mod demo_routes;
mod fleet;
mod observe;
mod project;
mod records;
mod serve;
#[cfg(test)]
mod serve_tests;
mod swarm;
mod web;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "flotilla",
    version,
    about = "Flotilla: a database spread over Internet Computer canisters",
    long_about = "Flotilla: one index canister creates partition canisters on demand and \
                  spreads SubDBs (ordered key-value collections) over them; clients read and \
                  write the partitions directly."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an embedded, simulated deployment: the real index and partition logic, simulated
    /// users writing until the index has created partitions and moved SubDBs; then a report.
    Demo(demo::DemoArgs),
    /// Run the simulator's fault swarm over many seeds; every failure names its seed.
    Sim(swarm::SimArgs),
    /// Measure the client in the simulator: parallel get_many, batched loads.
    Bench(bench::BenchArgs),
    #[command(flatten)]
    Data(data::DataCmd),
}

/// A failure the user can act on: one line, and the exit code.
pub struct Failure(pub String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Sim(a) => swarm::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Data(c) => data::run(c),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(line)) => {
            eprintln!("flotilla: {line}");
            ExitCode::FAILURE
        }
    }
}
