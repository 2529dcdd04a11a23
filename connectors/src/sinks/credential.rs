//! Credentials in a destination's configuration — written inline, or named from the tenant's
//! secrets store — and the two things done with the named ones: checking that they exist when
//! a destination is defined, and resolving them just before each delivery.
//!
//! Both go through [`SecretLookup`] under the destination's own tenant, so a configuration can
//! reach nothing outside its tenant. [`Secrets`] is the lookup the server passes.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::SinkError;
use crate::secrets::{SecretRef, SecretValue, Secrets, SecretsError};
use crate::store::SecretRows;

/// A credential in a destination's configuration: written inline (`"whsec_…"`), or named from
/// the tenant's secrets store (`{"secret": "shop-webhook"}`) and resolved by the sender just
/// before each delivery, so a rotated secret takes effect without touching the destination.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Credential {
    /// The value itself.
    Inline(String),
    /// A secret of the destination's tenant, by name.
    Stored(SecretRef),
}

impl Credential {
    /// The value, if it is inline (a stored one must be resolved first).
    pub fn inline(&self) -> Option<&str> {
        match self {
            Self::Inline(value) => Some(value),
            Self::Stored(_) => None,
        }
    }
}

impl From<&str> for Credential {
    fn from(value: &str) -> Self {
        Self::Inline(value.to_owned())
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("<redacted>"),
            Self::Stored(r) => write!(f, "secret {:?}", r.secret),
        }
    }
}

/// A tenant's secrets, as destinations use them.
#[async_trait]
pub trait SecretLookup: Send + Sync {
    /// The value `reference` names within `tenant`.
    async fn value(&self, tenant: &str, reference: &SecretRef)
    -> Result<SecretValue, SecretsError>;

    /// The names of `tenant`'s secrets.
    async fn names(&self, tenant: &str) -> Result<Vec<String>, SecretsError>;
}

#[async_trait]
impl<S: SecretRows + ?Sized + 'static> SecretLookup for Secrets<S> {
    async fn value(
        &self,
        tenant: &str,
        reference: &SecretRef,
    ) -> Result<SecretValue, SecretsError> {
        self.resolve(tenant, reference).await
    }

    async fn names(&self, tenant: &str) -> Result<Vec<String>, SecretsError> {
        let listed = self.list(tenant).await?;
        Ok(listed.into_iter().map(|secret| secret.name).collect())
    }
}

/// Replaces each stored credential with its value from `tenant`'s secrets, in order; the first
/// that cannot be read (deleted, not text, store unavailable) is the error.
pub(super) async fn resolve(
    credentials: Vec<(String, &mut Credential)>,
    tenant: &str,
    secrets: &dyn SecretLookup,
) -> Result<(), SinkError> {
    for (_, credential) in credentials {
        if let Credential::Stored(reference) = credential {
            let value = secrets.value(tenant, reference).await?;
            *credential = Credential::Inline(value.expose_str()?.to_owned());
        }
    }
    Ok(())
}

/// Checks that every stored credential names a secret `tenant` has, so a typo is refused when
/// the destination is defined rather than found in a dead delivery later. The secrets are
/// listed only when some credential is stored.
pub(super) async fn check_known(
    credentials: Vec<(String, &mut Credential)>,
    tenant: &str,
    secrets: &dyn SecretLookup,
) -> Result<(), SinkError> {
    let named: Vec<(String, &str)> = credentials
        .into_iter()
        .filter_map(|(field, credential)| match credential {
            Credential::Stored(reference) => Some((field, reference.secret.as_str())),
            Credential::Inline(_) => None,
        })
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    let known = secrets.names(tenant).await?;
    match named
        .into_iter()
        .find(|(_, name)| !known.iter().any(|k| k == name))
    {
        Some((field, name)) => Err(SinkError::UnknownSecret {
            field,
            name: name.to_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Secrets per tenant in a map; counts how often they were listed.
    #[derive(Default)]
    pub(crate) struct SecretMap {
        pub(crate) values: BTreeMap<(String, String), String>,
        pub(crate) listed: AtomicUsize,
    }

    impl SecretMap {
        pub(crate) fn with(entries: &[(&str, &str, &str)]) -> Self {
            Self {
                values: entries
                    .iter()
                    .map(|(t, n, v)| ((t.to_string(), n.to_string()), v.to_string()))
                    .collect(),
                listed: AtomicUsize::new(0),
            }
        }
    }

    #[async_trait]
    impl SecretLookup for SecretMap {
        async fn value(
            &self,
            tenant: &str,
            reference: &SecretRef,
        ) -> Result<SecretValue, SecretsError> {
            self.values
                .get(&(tenant.to_owned(), reference.secret.clone()))
                .map(|v| SecretValue::new(v.as_bytes().to_vec()))
                .ok_or_else(|| SecretsError::NotFound {
                    tenant: tenant.to_owned(),
                    name: reference.secret.clone(),
                    version: None,
                })
        }

        async fn names(&self, tenant: &str) -> Result<Vec<String>, SecretsError> {
            self.listed.fetch_add(1, Ordering::Relaxed);
            Ok(self
                .values
                .keys()
                .filter(|(t, _)| t == tenant)
                .map(|(_, n)| n.clone())
                .collect())
        }
    }

    fn stored(name: &str) -> Credential {
        Credential::Stored(SecretRef::new(name))
    }

    #[tokio::test]
    async fn resolves_stored_credentials_within_the_tenant_only() {
        let secrets = SecretMap::with(&[("a", "hook", "whsec_a"), ("b", "token", "b's")]);
        let (mut secret, mut inline) = (stored("hook"), Credential::from("Bearer x"));
        let fields = vec![
            ("config.secret".to_owned(), &mut secret),
            ("config.headers.x".to_owned(), &mut inline),
        ];
        resolve(fields, "a", &secrets).await.expect("resolved");
        assert_eq!(secret.inline(), Some("whsec_a"));
        assert_eq!(inline.inline(), Some("Bearer x"));

        // Tenant b's secret is not tenant a's: the error names it, and is not worth retrying.
        let mut other = stored("token");
        let err = resolve(
            vec![("config.secret".to_owned(), &mut other)],
            "a",
            &secrets,
        )
        .await
        .expect_err("not a's");
        assert!(err.to_string().contains("token"), "{err}");
        assert!(!err.is_transient());
    }

    #[tokio::test]
    async fn check_names_the_field_of_an_unknown_secret() {
        let secrets = SecretMap::with(&[("a", "hook", "whsec_a")]);
        let (mut known, mut unknown) = (stored("hook"), stored("tokn"));
        let fields = vec![
            ("config.secret".to_owned(), &mut known),
            ("config.headers.authorization".to_owned(), &mut unknown),
        ];
        let err = check_known(fields, "a", &secrets)
            .await
            .expect_err("unknown");
        assert_eq!(err.field(), Some("config.headers.authorization"));
        assert_eq!(
            err.to_string(),
            "config.headers.authorization: there is no secret named 'tokn'; create it first \
             (PUT /v1/secrets/tokn or `tidemark secrets put`)"
        );

        // Inline credentials need no lookup at all.
        let mut inline = Credential::from("whsec_x");
        let listed = secrets.listed.load(Ordering::Relaxed);
        check_known(
            vec![("config.secret".to_owned(), &mut inline)],
            "a",
            &secrets,
        )
        .await
        .expect("nothing stored");
        assert_eq!(secrets.listed.load(Ordering::Relaxed), listed);
    }
}
