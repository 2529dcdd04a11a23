//! CRM audiences and campaigns (`[crm]`): how long the membership log keeps its changes, and
//! how many threads the audience dataflow runs on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::time::DurationSetting;

/// The shortest `membership_log_retention`: a contact's history of the last day always shows.
pub(super) const MIN_MEMBERSHIP_LOG_RETENTION: Duration = Duration::from_secs(86_400);

/// `[crm]` settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrmSettings {
    /// How long the membership log (who entered or left which audience, when; a contact's
    /// history and what triggered campaigns follow) keeps a change, e.g. `"90d"`. Older
    /// changes the campaigns have followed are pruned in the background; members are kept
    /// apart and never pruned.
    pub membership_log_retention: DurationSetting,
    /// Timely worker threads of the audience dataflow (1 to 64). Its arrangements are spread
    /// over them by key; idle workers park.
    pub audience_workers: usize,
}

impl Default for CrmSettings {
    fn default() -> Self {
        CrmSettings {
            membership_log_retention: DurationSetting::from(Duration::from_secs(90 * 86_400)),
            audience_workers: 2,
        }
    }
}
