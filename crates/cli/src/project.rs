//! Where the index canister's id comes from when `--index` is not given: the canister id
//! mappings of the project the command runs in, icp-cli's first, dfx's second.
//!
//! - icp-cli keeps them per environment in `.icp/cache/mappings/<env>.ids.json` (a managed
//!   network such as `local`) or `.icp/data/mappings/<env>.ids.json` (a connected network
//!   such as `ic`), each a JSON object from canister name to id.
//! - dfx keeps `.dfx/local/canister_ids.json` (local) and `canister_ids.json` (mainnet), each
//!   a JSON object from canister name to an object from network name to id.
//!
//! The project root is the nearest directory, from the current one up, holding `icp.yaml` or
//! `dfx.json`.

use candid::Principal;
use std::path::{Path, PathBuf};

/// The canister the data commands talk to.
pub const INDEX_CANISTER: &str = "index";

/// The nearest directory at or above `from` with `icp.yaml` or `dfx.json`.
pub fn project_root(from: &Path) -> Option<PathBuf> {
    from.ancestors()
        .find(|d| d.join("icp.yaml").is_file() || d.join("dfx.json").is_file())
        .map(Path::to_path_buf)
}

/// The files that may name the index for `environment` (`local` or `ic`), in the order they
/// are read.
pub fn mapping_files(root: &Path, environment: &str) -> Vec<PathBuf> {
    let icp = if environment == "ic" { "data" } else { "cache" };
    let dfx = if environment == "ic" {
        root.join("canister_ids.json")
    } else {
        root.join(".dfx")
            .join(environment)
            .join("canister_ids.json")
    };
    vec![
        root.join(".icp")
            .join(icp)
            .join("mappings")
            .join(format!("{environment}.ids.json")),
        dfx,
    ]
}

/// The id of `canister` in one mapping file, in either tool's shape.
fn lookup(json: &serde_json::Value, canister: &str, environment: &str) -> Option<Principal> {
    let entry = json.get(canister)?;
    let text = entry
        .as_str()
        .or_else(|| entry.get(environment).and_then(|v| v.as_str()))?;
    Principal::from_text(text).ok()
}

/// The index's id for `environment` in the project around `from`, with the file it came
/// from; or a sentence saying where it was looked for.
pub fn find_index(from: &Path, environment: &str) -> Result<(Principal, PathBuf), String> {
    let Some(root) = project_root(from) else {
        return Err(format!(
            "no index canister id: pass --index ID (or set FLOTILLA_INDEX), or run inside an \
             icp-cli or dfx project (none found at or above {})",
            from.display()
        ));
    };
    let files = mapping_files(&root, environment);
    for f in &files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not JSON: {e}", f.display()))?;
        if let Some(id) = lookup(&json, INDEX_CANISTER, environment) {
            return Ok((id, f.clone()));
        }
    }
    Err(format!(
        "no index canister id: pass --index ID (or set FLOTILLA_INDEX), or deploy the project's \
         `{INDEX_CANISTER}` canister to {environment} first (looked in {})",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ryjl3-tyaaa-aaaaa-aaaba-cai";
    const OTHER: &str = "rrkah-fqaaa-aaaaa-aaaaq-cai";

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("flotilla-proj-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("src/deep")).unwrap();
        d
    }

    fn write(p: PathBuf, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    #[test]
    fn icp_cli_mappings_come_first_then_dfx() {
        let d = tmp("icp");
        write(d.join("icp.yaml"), "canisters: []\n");
        let deep = d.join("src/deep");
        assert!(find_index(&deep, "local")
            .unwrap_err()
            .contains("local.ids.json"));
        write(
            d.join(".dfx/local/canister_ids.json"),
            &format!(r#"{{"index": {{"local": "{OTHER}"}}}}"#),
        );
        assert_eq!(find_index(&deep, "local").unwrap().0.to_text(), OTHER);
        write(
            d.join(".icp/cache/mappings/local.ids.json"),
            &format!(r#"{{"index": "{ID}", "partition": "{OTHER}"}}"#),
        );
        let (id, from) = find_index(&deep, "local").unwrap();
        assert_eq!(id.to_text(), ID);
        assert!(from.ends_with(".icp/cache/mappings/local.ids.json"));
        // Mainnet reads its own files.
        assert!(find_index(&deep, "ic").is_err());
        write(
            d.join("canister_ids.json"),
            &format!(r#"{{"index": {{"ic": "{ID}"}}}}"#),
        );
        assert_eq!(find_index(&deep, "ic").unwrap().0.to_text(), ID);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn outside_a_project_the_error_says_what_to_pass() {
        let d = tmp("none");
        let e = find_index(&d, "local").unwrap_err();
        assert!(e.contains("--index"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_broken_mapping_file_is_named() {
        let d = tmp("broken");
        write(d.join("dfx.json"), "{}");
        write(d.join(".icp/cache/mappings/local.ids.json"), "{not json");
        let e = find_index(&d, "local").unwrap_err();
        assert!(
            e.contains("local.ids.json") && e.contains("not JSON"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
