//! PocketIC: not a world yet. The `pocket-ic` client crate is not a dependency of the
//! workspace, and the PocketIC server is a download from outside the package registries that
//! these machines cannot fetch, so there is nothing to run the scenario against here. A
//! `World` for it would create the index with `create_canister` + `install_canister`, map
//! `update_call` / `query_call` onto [`crate::World::update`] / [`crate::World::query`],
//! `tick` onto [`crate::World::tick`] and `upgrade_canister` (as the index, the partitions'
//! controller) onto [`crate::World::upgrade`], with the modules of `scripts/build-wasm.sh`.

/// Why the PocketIC run is skipped, given the value of `POCKET_IC_BIN`.
pub fn skip_reason(pocket_ic_bin: Option<&std::ffi::OsStr>) -> String {
    match pocket_ic_bin {
        None => "POCKET_IC_BIN is not set (the PocketIC server is a download from outside the \
                 package registries, so it cannot be installed here)"
            .to_string(),
        Some(bin) => format!(
            "POCKET_IC_BIN={} is set, but there is no PocketIC world: the `pocket-ic` client \
             crate is not a dependency of the workspace (see crates/scenario/src/pocket_ic.rs)",
            bin.to_string_lossy()
        ),
    }
}
