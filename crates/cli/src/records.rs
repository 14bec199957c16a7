//! What `flotilla export` writes and `flotilla load` reads: one item a record.
//!
//! - JSON lines: `{"key": "...", "value": "..."}` when a field is UTF-8 text, else
//!   `{"key_hex": "...", "value_hex": "..."}` (each field on its own), so any bytes round-trip.
//! - CSV: two columns, key and value, as text; a first row `key,value` is a header.
//!
//! And the checkpoint file of a resumable load, kept beside its input.

use flotilla_client::load::{Checkpoint, Progress};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

/// One field of a record, as text where the bytes are UTF-8.
pub fn put_field(obj: &mut serde_json::Map<String, serde_json::Value>, name: &str, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(t) => obj.insert(name.to_string(), t.into()),
        Err(_) => obj.insert(format!("{name}_hex"), hex::encode(b).into()),
    };
}

/// The JSON object of an item.
pub fn item_json(key: &[u8], value: Option<&[u8]>) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    put_field(&mut o, "key", key);
    match value {
        Some(v) => put_field(&mut o, "value", v),
        None => {
            o.insert("value".into(), serde_json::Value::Null);
        }
    }
    serde_json::Value::Object(o)
}

fn take_field(
    o: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Vec<u8>, String> {
    match (o.get(name), o.get(&format!("{name}_hex"))) {
        (Some(serde_json::Value::String(s)), None) => Ok(s.as_bytes().to_vec()),
        (None, Some(serde_json::Value::String(h))) => {
            hex::decode(h).map_err(|e| format!("{name}_hex is not hex: {e}"))
        }
        (Some(_), Some(_)) => Err(format!("both {name} and {name}_hex")),
        _ => Err(format!("no string field {name} or {name}_hex")),
    }
}

/// One JSON line as (key, value).
pub fn parse_json_line(line: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let o = v.as_object().ok_or("not a JSON object")?;
    Ok((take_field(o, "key")?, take_field(o, "value")?))
}

/// Input formats of `flotilla load`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    /// From the file's extension: `.csv` is CSV, anything else JSON lines.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

/// A record as (key, value), or why it does not parse.
pub type Record = Result<(Vec<u8>, Vec<u8>), String>;

/// The records of a file, in order.
pub fn read_records(
    path: &Path,
    format: Format,
) -> std::io::Result<Box<dyn Iterator<Item = Record>>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    Ok(match format {
        Format::Jsonl => Box::new(
            file.lines()
                .filter(|l| !matches!(l, Ok(l) if l.trim().is_empty()))
                .map(|l| {
                    l.map_err(|e| e.to_string())
                        .and_then(|l| parse_json_line(&l))
                }),
        ),
        Format::Csv => {
            let mut rows = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(file)
                .into_byte_records()
                .enumerate()
                .peekable();
            let header = matches!(rows.peek(), Some((0, Ok(r))) if r.len() == 2 && &r[0] == b"key" && &r[1] == b"value");
            Box::new(rows.skip(usize::from(header)).map(|(_, r)| {
                let r = r.map_err(|e| e.to_string())?;
                if r.len() != 2 {
                    return Err(format!("{} columns; key,value expected", r.len()));
                }
                Ok((r[0].to_vec(), r[1].to_vec()))
            }))
        }
    })
}

/// The load's id: SHA-256 of the SubDB's name and the input's bytes, so a rerun of the same
/// input into the same SubDB resumes, and anything else starts afresh.
pub fn load_id(outer: &str, path: &Path) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"flotilla-load-file");
    h.update((outer.len() as u64).to_le_bytes());
    h.update(outer.as_bytes());
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Saved {
    load_id: String,
    outer_key: String,
    parts: u64,
    records: u64,
}

/// A load's progress in a JSON file beside its input (`INPUT.flotilla-load`), written whole
/// to a temporary file and renamed, so a crash leaves the old or the new progress.
pub struct FileCheckpoint {
    path: PathBuf,
    load_id: String,
    outer: String,
    /// The progress read at `open` (of this load), then the last saved.
    progress: Progress,
}

impl FileCheckpoint {
    /// The checkpoint of loading `input` into `outer` under `load_id`. A checkpoint of
    /// another load (another input or SubDB) is an error: delete it to start over.
    pub fn open(input: &Path, outer: &str, load_id: &[u8]) -> Result<FileCheckpoint, String> {
        let mut name = input.as_os_str().to_owned();
        name.push(".flotilla-load");
        let mut cp = FileCheckpoint {
            path: PathBuf::from(name),
            load_id: hex::encode(load_id),
            outer: outer.to_string(),
            progress: Progress::default(),
        };
        if let Some(s) = cp.read()? {
            if s.load_id != cp.load_id || s.outer_key != cp.outer {
                return Err(format!(
                    "{} belongs to another load (SubDB {:?}, or the input changed); delete it to \
                     start over",
                    cp.path.display(),
                    s.outer_key
                ));
            }
            cp.progress = Progress {
                parts: s.parts,
                records: s.records,
            };
        }
        Ok(cp)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Option<Saved>, String> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| format!("{} is not a load checkpoint: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    /// Removes the checkpoint once the load is complete.
    pub fn finish(self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Checkpoint for FileCheckpoint {
    fn load(&mut self) -> Progress {
        self.progress
    }

    fn save(&mut self, p: Progress) -> std::io::Result<()> {
        let s = Saved {
            load_id: self.load_id.clone(),
            outer_key: self.outer.clone(),
            parts: p.parts,
            records: p.records,
        };
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, serde_json::to_vec(&s)?)?;
        std::fs::rename(&tmp, &self.path)?;
        self.progress = p;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_round_trip_any_bytes() {
        for (k, v) in [
            (b"plain".to_vec(), b"text \"quoted\"\n".to_vec()),
            (vec![0xff, 0x00, 0x80], b"v".to_vec()),
            (b"k".to_vec(), vec![0xc3, 0x28]),
            (vec![], vec![]),
        ] {
            let line = item_json(&k, Some(&v)).to_string();
            assert_eq!(parse_json_line(&line).unwrap(), (k, v), "{line}");
        }
        assert!(parse_json_line(r#"{"key":"a"}"#).is_err());
        assert!(parse_json_line(r#"{"key":"a","key_hex":"61","value":"v"}"#).is_err());
        assert!(parse_json_line(r#"{"key_hex":"zz","value":"v"}"#).is_err());
        assert!(parse_json_line("[1,2]").is_err());
    }

    #[test]
    fn csv_reads_pairs_and_skips_a_header() {
        let dir = std::env::temp_dir().join(format!("flotilla-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("in.csv");
        std::fs::write(&p, "key,value\na,1\n\"b,c\",\"two\nlines\"\nd,4,extra\n").unwrap();
        assert_eq!(Format::of(&p), Format::Csv);
        let got: Vec<_> = read_records(&p, Format::Csv).unwrap().collect();
        assert_eq!(got[0], Ok((b"a".to_vec(), b"1".to_vec())));
        assert_eq!(got[1], Ok((b"b,c".to_vec(), b"two\nlines".to_vec())));
        assert!(got[2].is_err());
        assert_eq!(got.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_checkpoint_belongs_to_one_load() {
        let dir = std::env::temp_dir().join(format!("flotilla-cp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in.jsonl");
        std::fs::write(&input, "{\"key\":\"a\",\"value\":\"1\"}\n").unwrap();
        let id = load_id("db", &input).unwrap();
        let mut cp = FileCheckpoint::open(&input, "db", &id).unwrap();
        assert_eq!(cp.load(), Progress::default());
        let p = Progress {
            parts: 3,
            records: 300,
        };
        cp.save(p).unwrap();
        let mut again = FileCheckpoint::open(&input, "db", &id).unwrap();
        assert_eq!(again.load(), p);
        assert!(FileCheckpoint::open(&input, "other", &id).is_err());
        std::fs::write(&input, "changed\n").unwrap();
        let id2 = load_id("db", &input).unwrap();
        assert_ne!(id, id2);
        assert!(FileCheckpoint::open(&input, "db", &id2).is_err());
        again.finish().unwrap();
        assert!(FileCheckpoint::open(&input, "db", &id2).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
