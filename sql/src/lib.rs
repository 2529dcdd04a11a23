//! The dashboard engine: catalog, table providers, semantic model, dashboard-spec compiler and
//! analysis functions on DataFusion. Not built yet: see the dashboard-engine issue.
