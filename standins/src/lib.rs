//! Stand-ins for outside SaaS APIs that cannot run on a test machine, used by the tests of
//! `connectors`, `sql` and `pipeline`. Each one validates every request against the service's
//! official API description and computes its answers the way the service defines them:
//! [`ga4`] (the GA4 Data API), [`slack`] (the Slack Web API).

pub mod ga4;
pub mod slack;
