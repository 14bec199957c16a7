//! Who may create SubDBs, and how many one principal may own.
//!
//! The policy is `Open` (every signed-in principal) or `AllowList` (the principals admins put
//! on the list with `allow_creators`); admins may always create. Each owner may own at most
//! `max_subdbs_per_owner` SubDBs at once: the count (`OWNERS`) grows when a create reserves a
//! name and shrinks when the partition refuses it or a delete completes, so creates in flight
//! count and parallel creates cannot pass the quota. A retried create whose op id already
//! created its SubDB answers as before, whatever the quota is now.

use crate::{Env, Index};
use candid::Principal;
use flotilla_types::index::{AdminError, CreateError, CreatePolicy};
use flotilla_types::limits::MAX_CREATORS_PER_CALL;
use ic_stable_structures::Memory;

/// SubDBs one principal may own by default.
pub const DEFAULT_MAX_SUBDBS_PER_OWNER: u64 = 10_000;

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
