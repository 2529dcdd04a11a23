//! Which GA4 metrics may be summed from finer report rows.
//!
//! A metric is *additive* across a dimension when the metric for a group equals the sum of the
//! metric over that group's rows split by the dimension. Counts of events (`eventCount`,
//! `screenPageViews`, `transactions`, revenue, custom event metrics) are additive across every
//! dimension. `sessions` and `engagedSessions` are additive only across dimensions that are
//! constant within a session (channel, source, device, geography, user-scoped custom
//! dimensions, the date): split by page or event, one session appears on many rows. Users
//! (`totalUsers`, `activeUsers`, `newUsers`…), rates and averages are additive across nothing.
//! Unknown metrics count as not additive.

/// How a metric adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Additivity {
    /// Across every dimension.
    Always,
    /// Across session-scoped dimensions only.
    SessionScoped,
    /// Never: distinct counts, ratios and averages.
    Never,
}

/// How `api_name` adds up.
pub fn additivity(api_name: &str) -> Additivity {
    const ALWAYS: &[&str] = &[
        "eventCount",
        "screenPageViews",
        "keyEvents",
        "conversions",
        "transactions",
        "ecommercePurchases",
        "purchaseRevenue",
        "totalRevenue",
        "grossPurchaseRevenue",
        "refundAmount",
        "shippingAmount",
        "taxAmount",
        "itemRevenue",
        "itemsPurchased",
        "itemsViewed",
        "itemsAddedToCart",
        "itemsCheckedOut",
        "addToCarts",
        "checkouts",
        "eventValue",
        "userEngagementDuration",
        "adRevenue",
        "publisherAdClicks",
        "publisherAdImpressions",
        "totalAdRevenue",
    ];
    if ALWAYS.contains(&api_name) || api_name.starts_with("customEvent:") {
        // Custom event metrics are sums of an event parameter.
        Additivity::Always
    } else if matches!(api_name, "sessions" | "engagedSessions") {
        Additivity::SessionScoped
    } else {
        Additivity::Never
    }
}

/// Whether a dimension is constant within a session.
pub fn session_scoped(api_name: &str) -> bool {
    const DIMENSIONS: &[&str] = &[
        "date",
        "year",
        "month",
        "week",
        "day",
        "yearMonth",
        "yearWeek",
        "isoYearIsoWeek",
        "dayOfWeek",
        "dayOfWeekName",
        "deviceCategory",
        "deviceModel",
        "mobileDeviceBranding",
        "operatingSystem",
        "operatingSystemVersion",
        "platform",
        "browser",
        "country",
        "countryId",
        "region",
        "city",
        "continent",
        "language",
        "languageCode",
        "landingPage",
        "landingPagePlusQueryString",
        "newVsReturning",
        "firstUserDefaultChannelGroup",
        "firstUserSource",
        "firstUserMedium",
        "firstUserCampaignName",
    ];
    DIMENSIONS.contains(&api_name)
        || api_name.starts_with("session")
        || api_name.starts_with("customUser:")
}

/// Whether summing `metric` over rows split by `dimensions` gives the metric of their union.
pub fn summable_across(metric: &str, dimensions: &[&str]) -> bool {
    match additivity(metric) {
        Additivity::Always => true,
        Additivity::SessionScoped => dimensions.iter().all(|d| session_scoped(d)),
        Additivity::Never => dimensions.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_rates_never_add_up_sessions_only_across_session_scoped_dimensions() {
        assert!(summable_across("screenPageViews", &["pagePath", "date"]));
        assert!(summable_across("customEvent:items", &["eventName"]));
        assert!(summable_across(
            "sessions",
            &["deviceCategory", "sessionSource"]
        ));
        assert!(!summable_across("sessions", &["pagePath"]));
        assert!(!summable_across("totalUsers", &["date"]));
        assert!(!summable_across("bounceRate", &["deviceCategory"]));
        assert!(
            summable_across("totalUsers", &[]),
            "one row per group adds nothing"
        );
    }
}
