//! The data commands end to end against a simulated deployment: the same `exec` the binary
//! runs over ic-agent, here over the simulator's in-process transport. Each world is seeded;
//! a failure names its seed.

use crate::data::{exec, Conn, DataCmd, Output};
use crate::Failure;
use candid::Principal;
use flotilla_client::Client;
use flotilla_sim::transport::{block_on, SharedWorld, SimTransport};
use flotilla_sim::{Faults, SimConfig, World};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

fn world(seed: u64) -> SharedWorld {
    let mut cfg = SimConfig::from_seed(seed, 0)
        .with_faults(Faults::NONE)
        .with_open_creates();
    cfg.clients = 0;
    cfg.move_cap_bytes = 1 << 30;
    cfg.spare_pool_target = 1;
    let mut w = World::new(cfg);
    w.set_open_ended(true);
    Rc::new(RefCell::new(w))
}

fn conn(output: Output) -> Conn {
    Conn {
        network: "local".into(),
        index: None,
        identity: None,
        output,
        hex: false,
    }
}

struct Cli {
    w: SharedWorld,
    client: Client<SimTransport>,
    seed: u64,
}

impl Cli {
    fn new(seed: u64) -> Cli {
        let w = world(seed);
        let index = w.borrow().index_id();
        let me = Principal::self_authenticating([9u8; 32]);
        let client = Client::new(SimTransport::new(w.clone(), me, [seed as u8; 32]), index);
        Cli { w, client, seed }
    }

    /// Runs a command to its end; what it printed, or its failure line.
    fn run(&self, output: Output, cmd: DataCmd) -> Result<String, String> {
        self.run_within(u64::MAX / 2, output, cmd)
            .unwrap_or_else(|| panic!("seed={}: the world stalled", self.seed))
    }

    /// As `run`, but gives up after `rounds` simulated rounds (the process was killed): `None`.
    fn run_within(
        &self,
        rounds: u64,
        output: Output,
        mut cmd: DataCmd,
    ) -> Option<Result<String, String>> {
        cmd.conn_mut().output = output;
        let mut out = vec![];
        let r = block_on(&self.w, rounds, exec(&self.client, &cmd, &mut out, false));
        match r {
            Ok((Ok(()), _)) => Some(Ok(String::from_utf8(out).unwrap())),
            Ok((Err(Failure(line)), _)) => Some(Err(line)),
            Err(_) => None,
        }
    }

    /// The same world, as its admin.
    fn admin(&self) -> Cli {
        let index = self.w.borrow().index_id();
        let who = self.w.borrow().admin();
        Cli {
            w: self.w.clone(),
            client: Client::new(SimTransport::new(self.w.clone(), who, [0xad; 32]), index),
            seed: self.seed,
        }
    }

    /// The same world, as another principal.
    fn other_user(&self, n: u8) -> Cli {
        let index = self.w.borrow().index_id();
        let who = Principal::self_authenticating([n; 32]);
        Cli {
            w: self.w.clone(),
            client: Client::new(SimTransport::new(self.w.clone(), who, [n; 32]), index),
            seed: self.seed,
        }
    }

    fn ok(&self, cmd: DataCmd) -> String {
        let shown = format!("{cmd:?}");
        self.run(Output::Text, cmd)
            .unwrap_or_else(|e| panic!("seed={}: {shown}: {e}", self.seed))
    }

    fn json(&self, cmd: DataCmd) -> String {
        let shown = format!("{cmd:?}");
        self.run(Output::Json, cmd)
            .unwrap_or_else(|e| panic!("seed={}: {shown}: {e}", self.seed))
    }

    fn rounds(&self) -> u64 {
        self.w.borrow().round()
    }
}

fn put(name: &str, k: &str, v: &str) -> DataCmd {
    DataCmd::Put {
        conn: conn(Output::Text),
        name: name.into(),
        key: k.into(),
        value: v.into(),
    }
}

fn scan(
    name: &str,
    reverse: bool,
    from: Option<&str>,
    to: Option<&str>,
    limit: Option<u64>,
) -> DataCmd {
    DataCmd::Scan {
        conn: conn(Output::Text),
        name: name.into(),
        reverse,
        from: from.map(Into::into),
        to: to.map(Into::into),
        limit,
    }
}

fn create(name: &str) -> DataCmd {
    DataCmd::Create {
        conn: conn(Output::Text),
        name: name.into(),
        hard_cap: None,
        owner: None,
        readers: vec![],
        writers: vec![],
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flotilla-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn every_data_command_works() {
    let cli = Cli::new(21);
    assert!(cli
        .ok(create("notes"))
        .starts_with("created notes on partition "));
    let created = cli.run(Output::Text, create("notes")).unwrap_err();
    assert!(created.contains("create notes"), "{created}");
    for i in 0..12 {
        assert_eq!(
            cli.ok(put("notes", &format!("k{i:02}"), &format!("v{i}"))),
            "ok (new)\n"
        );
    }
    assert_eq!(cli.ok(put("notes", "k03", "three")), "ok (replaced)\n");
    assert_eq!(
        cli.ok(DataCmd::Get {
            conn: conn(Output::Text),
            name: "notes".into(),
            key: "k03".into()
        }),
        "three\n"
    );
    assert_eq!(
        cli.json(DataCmd::Get {
            conn: conn(Output::Text),
            name: "notes".into(),
            key: "k03".into()
        }),
        "{\"key\":\"k03\",\"value\":\"three\"}\n"
    );
    assert_eq!(
        cli.json(DataCmd::Get {
            conn: conn(Output::Text),
            name: "notes".into(),
            key: "nope".into()
        }),
        "{\"key\":\"nope\",\"value\":null}\n"
    );
    let missing = cli
        .run(
            Output::Text,
            DataCmd::Get {
                conn: conn(Output::Text),
                name: "notes".into(),
                key: "nope".into(),
            },
        )
        .unwrap_err();
    assert_eq!(missing, "nope is not in notes");

    let fwd = cli.ok(scan("notes", false, Some("k02"), Some("k06"), None));
    assert_eq!(fwd, "k02\tv2\nk03\tthree\nk04\tv4\nk05\tv5\n");
    let rev = cli.ok(scan("notes", true, None, None, Some(3)));
    assert_eq!(rev, "k11\tv11\nk10\tv10\nk09\tv9\n");
    let all = cli.json(scan("notes", false, None, None, None));
    assert_eq!(all.lines().count(), 12);
    assert_eq!(
        all.lines().next(),
        Some("{\"key\":\"k00\",\"value\":\"v0\"}")
    );

    assert_eq!(
        cli.ok(DataCmd::Del {
            conn: conn(Output::Text),
            name: "notes".into(),
            key: "k00".into()
        }),
        "deleted\n"
    );
    assert_eq!(
        cli.ok(DataCmd::Del {
            conn: conn(Output::Text),
            name: "notes".into(),
            key: "k00".into()
        }),
        "was not there\n"
    );

    cli.ok(create("other"));
    let routes: serde_json::Value = serde_json::from_str(&cli.json(DataCmd::Routes {
        conn: conn(Output::Text),
    }))
    .unwrap();
    let names: Vec<_> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["notes", "other"]);
    let text_routes = cli.ok(DataCmd::Routes {
        conn: conn(Output::Text),
    });
    assert!(text_routes.starts_with("notes\t"), "{text_routes}");

    let stats = cli.ok(DataCmd::Stats {
        conn: conn(Output::Text),
    });
    assert!(stats.starts_with("2 SubDBs on "), "{stats}");
    assert!(stats.contains("active"), "{stats}");
    assert!(stats.contains("no moves in flight"), "{stats}");
    let stats_json: serde_json::Value = serde_json::from_str(&cli.json(DataCmd::Stats {
        conn: conn(Output::Text),
    }))
    .unwrap();
    assert_eq!(stats_json["subdbs"], 2);

    // Another principal may not read a private SubDB, and learns nothing of it: the answer of
    // an absent SubDB, with a hint at what to pass.
    let stranger = cli.other_user(77);
    let refused = stranger
        .run(Output::Text, scan("notes", false, None, None, None))
        .unwrap_err();
    assert_eq!(
        refused,
        "scan notes: no such SubDB; if it exists and is shared with you, pass --identity with \
         the PEM of a principal allowed to read it"
    );

    assert_eq!(
        cli.ok(DataCmd::Drop {
            conn: conn(Output::Text),
            name: "other".into()
        }),
        "dropped other\n"
    );
    let gone = cli
        .run(Output::Text, scan("other", false, None, None, None))
        .unwrap_err();
    assert!(
        gone.contains("no SubDB is named \"other\"") && gone.contains("flotilla routes"),
        "{gone}"
    );
}

#[test]
fn hex_keys_and_binary_values_round_trip() {
    let cli = Cli::new(22);
    cli.ok(create("bin"));
    let mut cmd = put("bin", "00ff", "c328");
    cmd.conn_mut().hex = true;
    cli.ok(cmd);
    let got = cli.json(scan("bin", false, None, None, None));
    assert_eq!(got, "{\"key_hex\":\"00ff\",\"value_hex\":\"c328\"}\n");
    let mut bad = put("bin", "zz", "00");
    bad.conn_mut().hex = true;
    let e = cli.run(Output::Text, bad).unwrap_err();
    assert!(e.contains("not hex"), "{e}");
}
fn write_jsonl(path: &Path, n: usize) {
    let mut s = String::new();
    for i in 0..n {
        s += &format!(
            "{{\"key\":\"item{i:06}\",\"value\":\"{}\"}}\n",
            "x".repeat(90) + &format!("{i:010}")
        );
    }
    std::fs::write(path, s).unwrap();
}

/// `flotilla load` killed halfway (its future dropped mid-flight after half the rounds a full
/// load takes) and run again: every record is there exactly once, and the checkpoint is
/// gone. Then export, load the export into a second SubDB, and export that: equal files.
#[test]
fn an_interrupted_load_resumes_and_exports_round_trip() {
    let dir = tmp("load");
    let input = dir.join("items.jsonl");
    let n = 40_000;
    write_jsonl(&input, n);
    let load_cmd = |name: &str| DataCmd::Load {
        conn: conn(Output::Text),
        name: name.into(),
        file: input.clone(),
        format: None,
    };

    // How many rounds an uninterrupted load takes, in a world of the same seed.
    let full = Cli::new(23);
    full.ok(create("items"));
    let start = full.rounds();
    let done = full.ok(load_cmd("items"));
    let took = full.rounds() - start;
    assert_eq!(
        done,
        format!("loaded {n} items into items in 4 batched writes\n")
    );

    let cli = Cli::new(23);
    cli.ok(create("items"));
    assert!(cli
        .run_within(took / 2, Output::Text, load_cmd("items"))
        .is_none());
    let cp = dir.join("items.jsonl.flotilla-load");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&cp).unwrap()).unwrap();
    let records = saved["records"].as_u64().unwrap();
    assert!(records > 0 && records < n as u64, "seed=23: {saved}");
    // Another SubDB may not take over this checkpoint.
    cli.ok(create("elsewhere"));
    let refused = cli.run(Output::Text, load_cmd("elsewhere")).unwrap_err();
    assert!(refused.contains("belongs to another load"), "{refused}");
    // The rerun resumes.
    let resumed = cli.ok(load_cmd("items"));
    assert!(
        resumed.starts_with(&format!("loaded {n} items")),
        "{resumed}"
    );
    assert!(!cp.exists());
    let stats = cli
        .run(Output::Json, scan("items", false, None, None, None))
        .unwrap();
    assert_eq!(stats.lines().count(), n);
    let mut expected = std::fs::read_to_string(&input).unwrap();
    assert_eq!(stats, expected, "every item once, in order, with its value");

    // export -> load -> export.
    let out1 = dir.join("out1.jsonl");
    let said = cli.ok(DataCmd::Export {
        conn: conn(Output::Text),
        name: "items".into(),
        out: Some(out1.clone()),
    });
    assert_eq!(
        said,
        format!("exported {n} items of items to {}\n", out1.display())
    );
    cli.ok(create("copy"));
    cli.ok(DataCmd::Load {
        conn: conn(Output::Text),
        name: "copy".into(),
        file: out1.clone(),
        format: None,
    });
    let out2 = cli.ok(DataCmd::Export {
        conn: conn(Output::Text),
        name: "copy".into(),
        out: None,
    });
    expected = std::fs::read_to_string(&out1).unwrap();
    assert_eq!(out2, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_record_stops_the_load_after_the_parts_before_it() {
    let dir = tmp("bad");
    let input = dir.join("in.csv");
    let mut s = String::from("key,value\n");
    for i in 0..15_000 {
        s += &format!("k{i:05},v{i}\n");
    }
    s += "only-one-column\n";
    std::fs::write(&input, s).unwrap();
    let cli = Cli::new(24);
    cli.ok(create("csv"));
    let e = cli
        .run(
            Output::Text,
            DataCmd::Load {
                conn: conn(Output::Text),
                name: "csv".into(),
                file: input.clone(),
                format: None,
            },
        )
        .unwrap_err();
    assert!(e.contains("record 15001") && e.contains("1 columns"), "{e}");
    let n = cli.ok(scan("csv", false, None, None, None)).lines().count();
    assert_eq!(n, 10_000, "the first full part is in");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `upload-wasm` then `upgrade` as the admin: the module goes up in chunks, every partition
/// is upgraded to it (the world's management canister keeps module hashes), the data stays;
/// a user who is not an admin gets the index's refusal as one line.
#[test]
fn upload_wasm_and_upgrade_roll_a_module_out() {
    use sha2::{Digest, Sha256};
    let user = Cli::new(23);
    user.ok(create("notes"));
    user.ok(put("notes", "k", "v"));
    let dir = tmp("upgrade");
    let file = dir.join("partition.wasm");
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend((0..2_500_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&file, &module).unwrap();
    let sha = Sha256::digest(&module).to_vec();
    let upload = || DataCmd::UploadWasm {
        conn: conn(Output::Text),
        file: file.clone(),
    };
    let upgrade = || DataCmd::Upgrade {
        conn: conn(Output::Text),
        batch: Some(2),
        no_wait: false,
    };
    let refused = user.run(Output::Text, upload()).unwrap_err();
    assert!(
        refused.contains("only an admin"),
        "seed={}: {refused}",
        user.seed
    );
    let refused = user.run(Output::Text, upgrade()).unwrap_err();
    assert!(
        refused.contains("only an admin"),
        "seed={}: {refused}",
        user.seed
    );
    let admin = user.admin();
    let out = admin.ok(upload());
    assert!(
        out.contains("uploaded 2500008 bytes"),
        "seed={}: {out}",
        user.seed
    );
    assert!(
        out.contains(&hex::encode(&sha)),
        "seed={}: {out}",
        user.seed
    );
    let out = admin.ok(upgrade());
    assert!(
        out.contains("ended:") && out.contains(", 0 failed"),
        "seed={}: {out}",
        user.seed
    );
    let stats: serde_json::Value = serde_json::from_str(&admin.json(DataCmd::Stats {
        conn: conn(Output::Json),
    }))
    .unwrap();
    let parts = stats["partitions"].as_array().unwrap();
    assert!(!parts.is_empty());
    for p in parts {
        let m: Vec<u8> = serde_json::from_value(p["module"].clone()).unwrap();
        assert_eq!(m, sha, "seed={}: {p}", user.seed);
    }
    let upgraded = stats["fleet_upgrade"]["upgraded"].as_u64().unwrap();
    assert_eq!(upgraded, parts.len() as u64, "seed={}", user.seed);
    let got = user.ok(DataCmd::Get {
        conn: conn(Output::Text),
        name: "notes".into(),
        key: "k".into(),
    });
    assert_eq!(got.trim(), "v", "seed={}", user.seed);
}
