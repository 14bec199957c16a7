//! The settings admins may change after install (`update_settings`): the spare pool, the
//! move cap, the cycles of a new partition, the cycles care's threshold, target and reserve,
//! who may create SubDBs, how many one principal may own and the byte quota of new SubDBs. The
//! install argument sets the same ones (`Index::install`).

use crate::records::Config;
use crate::{Env, Index};
use flotilla_types::index::{IndexSettings, SettingsError};
use flotilla_types::limits::MAX_SPARE_POOL_TARGET;
use ic_stable_structures::Memory;

impl<M: Memory> Index<M> {
    /// Replaces each setting given, once all of them are checked; nothing changes on an error.
    pub fn update_settings(
        &mut self,
        env: &Env,
        settings: IndexSettings,
    ) -> Result<(), SettingsError> {
        if !self.is_admin(&env.caller) {
            return Err(SettingsError::NotAuthorized);
        }
        let mut c = self.cfg().clone();
        apply(&mut c, &settings)?;
        self.config.set(c);
        Ok(())
    }
}

/// `settings` applied to `c`, or the first invalid one.
pub(crate) fn apply(c: &mut Config, s: &IndexSettings) -> Result<(), SettingsError> {
    if let Some(n) = s.spare_pool_target {
        if n > MAX_SPARE_POOL_TARGET {
            return Err(SettingsError::TooManySpares {
                value: n,
                max: MAX_SPARE_POOL_TARGET,
            });
        }
    }
    if s.move_cap_bytes == Some(0) {
        return Err(SettingsError::ZeroMoveCap);
    }
    if s.max_bytes_per_subdb == Some(0) {
        return Err(SettingsError::ZeroByteQuota);
    }
    let threshold = s.cycles_threshold.unwrap_or(c.cycles.threshold);
    let target = s.cycles_target.unwrap_or(c.cycles.target);
    if target < threshold {
        return Err(SettingsError::TargetBelowThreshold { target, threshold });
    }
    c.spare_pool_target = s.spare_pool_target.unwrap_or(c.spare_pool_target);
    c.move_cap_bytes = s.move_cap_bytes.unwrap_or(c.move_cap_bytes);
    c.partition_cycles = s.partition_cycles.unwrap_or(c.partition_cycles);
    c.cycles.threshold = threshold;
    c.cycles.target = target;
    c.cycles.reserve = s.cycles_reserve.unwrap_or(c.cycles.reserve);
    c.create_policy = s.create_policy.unwrap_or(c.create_policy);
    c.max_subdbs_per_owner = s.max_subdbs_per_owner.unwrap_or(c.max_subdbs_per_owner);
    c.max_bytes_per_subdb = s.max_bytes_per_subdb.unwrap_or(c.max_bytes_per_subdb);
    Ok(())
}
