//! Who may create SubDBs, and how many one principal may own.
//!
//! The policy is `Open` (every signed-in principal) or `AllowList` (the principals admins put
//! on the list with `allow_creators`); admins may always create. Each owner may own at most
//! `max_subdbs_per_owner` SubDBs at once: the count (`OWNERS`) grows when a create reserves a
//! name and shrinks when the partition refuses it or a delete completes, so creates in flight
//! count and parallel creates cannot pass the quota. A retried create whose op id already
//! created its SubDB answers as before, whatever the quota is now.
//!
//! Bytes: each new SubDB gets a byte quota, `max_bytes_per_subdb` (keys plus values), sent in
//! `create_subdb_local` and kept by the partition in the SubDB's metadata blob, which moves
//! with the SubDB; the partition refuses a put or batch that would take the SubDB past it
//! (`QuotaExceeded`), with no call to the index. The quota is per SubDB: a principal can hold
//! at most `max_subdbs_per_owner` × `max_bytes_per_subdb` bytes in SubDBs it owns (writers it
//! admits write into the owner's quota). A total per principal across partitions would need
//! the partitions to ask the index, so it is not kept. A changed setting applies to SubDBs
//! created from then on.

use crate::{Env, Index};
use candid::Principal;
use flotilla_types::index::{AdminError, CreateError, CreatePolicy};
use flotilla_types::limits::MAX_CREATORS_PER_CALL;
use ic_stable_structures::Memory;

/// SubDBs one principal may own by default.
pub const DEFAULT_MAX_SUBDBS_PER_OWNER: u64 = 10_000;
/// Byte quota of a new SubDB by default: the default move cap, so a full SubDB still fits a
/// partition with room.
pub const DEFAULT_MAX_BYTES_PER_SUBDB: u64 = crate::DEFAULT_MOVE_CAP_BYTES;

impl<M: Memory> Index<M> {
    /// May `env.caller` create a SubDB owned by `owner` now?
    pub(crate) fn check_quota(&self, env: &Env, owner: Principal) -> Result<(), CreateError> {
        let admin = self.is_admin(&env.caller);
        if self.cfg().create_policy == CreatePolicy::AllowList
            && !admin
            && !self.creators.contains_key(&env.caller)
        {
            return Err(CreateError::NotAllowedToCreate);
        }
        let max = self.cfg().max_subdbs_per_owner;
        if self.owned(&owner) >= max {
            return Err(CreateError::SubDbQuotaExceeded { max });
        }
        Ok(())
    }

    /// SubDBs `owner` owns, creates in progress included.
    pub fn owned(&self, owner: &Principal) -> u64 {
        self.owners.get(owner).unwrap_or(0)
    }

    /// A name was reserved for `owner` (+1) or released or deleted (−1).
    pub(crate) fn count_owned(&mut self, owner: Principal, up: bool) {
        let n = self.owned(&owner);
        let n = if up {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
        if n == 0 {
            self.owners.remove(&owner);
        } else {
            self.owners.insert(owner, n);
        }
    }

    /// A name was reserved for `owner` (`up`) or released or deleted: the count of
    /// [`Self::owned`] and the set of owned names (`OWNED_KEYS`) move together.
    pub(crate) fn note_owned(&mut self, owner: Principal, outer_key: &str, up: bool) {
        self.count_owned(owner, up);
        let k = owned_key(&owner, outer_key);
        if up {
            self.owned_keys.insert(k, ());
        } else {
            self.owned_keys.remove(&k);
        }
    }

    /// Fills `OWNED_KEYS` from the directory when an index written before it existed opens
    /// (an empty set beside a non-empty directory); otherwise does nothing.
    pub(crate) fn backfill_owned_keys(&mut self) {
        if !self.owned_keys.is_empty() || self.directory.is_empty() {
            return;
        }
        let names: Vec<Vec<u8>> = self
            .directory
            .iter()
            .map(|e| {
                let (k, v) = e.into_pair();
                owned_key(&v.owner, &k)
            })
            .collect();
        for k in names {
            self.owned_keys.insert(k, ());
        }
    }

    /// The names `owner` owns, in order, after `start_after` (creates in progress included).
    pub(crate) fn owned_names<'a>(
        &'a self,
        owner: &Principal,
        start_after: Option<&str>,
    ) -> impl Iterator<Item = String> + 'a {
        let prefix = owned_key(owner, "");
        let from = match start_after {
            Some(k) => std::ops::Bound::Excluded(owned_key(owner, k)),
            None => std::ops::Bound::Included(prefix.clone()),
        };
        let n = prefix.len();
        self.owned_keys
            .range((from, std::ops::Bound::Unbounded))
            .map(|e| e.into_pair().0)
            .take_while(move |k| k.starts_with(&prefix))
            .map(move |k| String::from_utf8_lossy(&k[n..]).into_owned())
    }

    /// Puts `who` on the allow-list of creators (admins only).
    pub fn allow_creators(&mut self, env: &Env, who: Vec<Principal>) -> Result<(), AdminError> {
        self.check_creators_call(env, &who)?;
        for p in who {
            if p != Principal::anonymous() {
                self.creators.insert(p, ());
            }
        }
        Ok(())
    }

    /// Takes `who` off the allow-list (admins only). SubDBs they own stay theirs.
    pub fn disallow_creators(&mut self, env: &Env, who: Vec<Principal>) -> Result<(), AdminError> {
        self.check_creators_call(env, &who)?;
        for p in who {
            self.creators.remove(&p);
        }
        Ok(())
    }

    fn check_creators_call(&self, env: &Env, who: &[Principal]) -> Result<(), AdminError> {
        if !self.is_admin(&env.caller) {
            return Err(AdminError::NotAuthorized);
        }
        if who.len() > MAX_CREATORS_PER_CALL {
            return Err(AdminError::TooManyPrincipals {
                len: who.len() as u64,
                max: MAX_CREATORS_PER_CALL as u64,
            });
        }
        Ok(())
    }

    /// Principals on the allow-list.
    pub(crate) fn allowed_creators(&self) -> u64 {
        self.creators.len()
    }
}

/// Key of `OWNED_KEYS`: the owner's length (one byte) and bytes, then the outer key's bytes,
/// so one owner's names are one contiguous range in name order.
pub(crate) fn owned_key(owner: &Principal, outer_key: &str) -> Vec<u8> {
    let p = owner.as_slice();
    let mut k = Vec::with_capacity(1 + p.len() + outer_key.len());
    k.push(p.len() as u8);
    k.extend_from_slice(p);
    k.extend_from_slice(outer_key.as_bytes());
    k
}
