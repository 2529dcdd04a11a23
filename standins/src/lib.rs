//! Stand-ins for outside SaaS APIs that cannot run on a test machine, used by the tests of
//! `connectors`, `sql` and `pipeline`. Each one validates every request against the service's
//! official API description and computes its answers the way the service defines them.

pub mod ga4;
