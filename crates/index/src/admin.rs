//! The index's admins: who they are, adding and removing them.

use crate::{Env, Index};
use candid::Principal;
use flotilla_types::index::AdminError;
use ic_stable_structures::Memory;

impl<M: Memory> Index<M> {
    pub fn is_admin(&self, p: &Principal) -> bool {
        self.cfg().admins.contains(p)
    }

    pub fn add_admin(&mut self, env: &Env, p: Principal) -> Result<(), AdminError> {
        if !self.is_admin(&env.caller) {
            return Err(AdminError::NotAuthorized);
        }
        if p == Principal::anonymous() {
            return Err(AdminError::Anonymous);
        }
        self.update_cfg(|c| {
            if !c.admins.contains(&p) {
                c.admins.push(p);
                c.admins.sort();
            }
        });
        Ok(())
    }

    pub fn remove_admin(&mut self, env: &Env, p: Principal) -> Result<(), AdminError> {
        if !self.is_admin(&env.caller) {
            return Err(AdminError::NotAuthorized);
        }
        if self.cfg().admins == [p] {
            return Err(AdminError::LastAdmin);
        }
        self.update_cfg(|c| c.admins.retain(|a| *a != p));
        Ok(())
    }
}
