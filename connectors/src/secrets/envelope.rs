//! Envelope encryption of one secret value under AES-256-GCM.
//!
//! Each value gets its own random 256-bit data key (DEK) and a random 96-bit nonce; the DEK
//! is then encrypted ("wrapped") under the key-encryption key (KEK) with another random nonce.
//! Both layers authenticate the same binding — tenant, secret name, secret version, KEK
//! version — as associated data, each under its own layer label, so a row copied to another
//! tenant, name or version, a row whose KEK version was edited, or a wrapped DEK swapped
//! with a ciphertext, all fail authentication instead of decrypting.
//!
//! The binding is read from the row itself ([`SecretRow`]'s tenant, name, version and KEK
//! version): nothing else is needed to check a row, and nothing in it can change unnoticed.

use aes_gcm::aead::{Aead as _, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::kek::Kek;
use super::{SecretValue, SecretsError};
use crate::store::SecretRow;

/// Bytes in an AES-256 key.
pub const KEY_BYTES: usize = 32;
/// Bytes in a GCM nonce (96 bits: the size GCM is specified and analysed for).
pub const NONCE_BYTES: usize = 12;
/// Bytes in a GCM authentication tag.
pub const TAG_BYTES: usize = 16;

/// Label opening every associated-data string, so these bytes can never be mistaken for
/// associated data of another protocol or a later format.
const AAD_LABEL: &[u8] = b"tidemark.secret.v1";

/// 256 bits of key material; zeroed when dropped. `Debug` and `Display` redact.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyBytes([u8; KEY_BYTES]);

impl KeyBytes {
    /// A fresh key from the thread-local CSPRNG (seeded from the operating system).
    pub fn random() -> Self {
        let mut key = Self([0; KEY_BYTES]);
        rand::rng().fill_bytes(&mut key.0);
        key
    }

    /// The key in `bytes`, if it is exactly [`KEY_BYTES`] long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut key = Self([0; KEY_BYTES]);
        if bytes.len() != KEY_BYTES {
            return None;
        }
        key.0.copy_from_slice(bytes);
        Some(key)
    }

    /// The raw key, for handing to a KEK store. Keep the borrow short.
    pub fn expose(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBytes(<redacted>)")
    }
}

impl std::fmt::Display for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted key>")
    }
}

/// AES-256-GCM under one key: the primitive both layers use (public so known-answer tests
/// can drive it directly). The key schedule is zeroed when dropped.
pub struct Aead(Aes256Gcm);

/// Authentication failed, or the input could not be encrypted. Deliberately says nothing
/// more: callers add which secret and which layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("AES-256-GCM authentication failed")]
pub struct AeadError;

impl Aead {
    /// A cipher for `key`.
    pub fn new(key: &KeyBytes) -> Self {
        Self(Aes256Gcm::new(key.expose().into()))
    }

    /// A cipher for a raw key; `None` unless it is [`KEY_BYTES`] long.
    pub fn from_slice(key: &[u8]) -> Option<Self> {
        Aes256Gcm::new_from_slice(key).ok().map(Self)
    }

    /// Encrypts `plaintext`, authenticating it together with `aad`; returns ciphertext with
    /// the tag appended.
    pub fn encrypt(
        &self,
        nonce: &[u8; NONCE_BYTES],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, AeadError> {
        self.0
            .encrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| AeadError)
    }

    /// Checks the tag of `ciphertext` (tag appended) over it and `aad`, then decrypts. Nothing
    /// is decrypted unless the tag is right; a nonce of the wrong size is a failure too.
    pub fn decrypt(
        &self,
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, AeadError> {
        if nonce.len() != NONCE_BYTES {
            return Err(AeadError);
        }
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| AeadError)
    }
}

impl std::fmt::Debug for Aead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aead(<redacted>)")
    }
}

/// Which layer of the envelope failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// The data key wrapped under the KEK.
    DataKey,
    /// The value encrypted under the data key.
    Value,
}

impl Layer {
    fn label(self) -> u8 {
        match self {
            Self::DataKey => b'k',
            Self::Value => b'v',
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::DataKey => "data-key",
            Self::Value => "value",
        })
    }
}

/// The associated data of `layer` for a row: label, layer, then each binding field with its
/// length, so no two different bindings encode to the same bytes.
pub fn associated_data(
    layer: Layer,
    tenant: &str,
    name: &str,
    version: u64,
    kek_version: u32,
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 1 + 8 + tenant.len() + name.len() + 12);
    aad.extend_from_slice(AAD_LABEL);
    aad.push(layer.label());
    for field in [tenant.as_bytes(), name.as_bytes()] {
        // Tenants and names are validated to be short; a length that does not fit is
        // impossible here, and saturating keeps the encoding total anyway.
        aad.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(field);
    }
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(&kek_version.to_be_bytes());
    aad
}

fn random_nonce() -> [u8; NONCE_BYTES] {
    let mut nonce = [0; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

fn row_aad(layer: Layer, row: &SecretRow, kek_version: u32) -> Vec<u8> {
    associated_data(layer, &row.tenant, &row.name, row.version, kek_version)
}

/// Encrypts `value` into a new row for `(tenant, name, version)` under a fresh data key
/// wrapped by `kek`.
pub fn seal(
    kek: &Kek,
    tenant: &str,
    name: &str,
    version: u64,
    value: &[u8],
    created_at_ms: i64,
) -> Result<SecretRow, SecretsError> {
    let mut row = SecretRow {
        tenant: tenant.to_owned(),
        name: name.to_owned(),
        version,
        kek_version: kek.version(),
        dek_nonce: Vec::new(),
        wrapped_dek: Vec::new(),
        value_nonce: Vec::new(),
        ciphertext: Vec::new(),
        created_at_ms,
    };
    seal_into(kek, &KeyBytes::random(), value, &mut row)?;
    Ok(row)
}

/// Fills the sealed fields of `row` (whose binding fields are set, `kek_version` included).
fn seal_into(
    kek: &Kek,
    dek: &KeyBytes,
    value: &[u8],
    row: &mut SecretRow,
) -> Result<(), SecretsError> {
    let failed = |layer| SecretsError::Seal {
        tenant: row.tenant.clone(),
        name: row.name.clone(),
        layer,
    };
    let value_nonce = random_nonce();
    let ciphertext = Aead::new(dek)
        .encrypt(
            &value_nonce,
            &row_aad(Layer::Value, row, kek.version()),
            value,
        )
        .map_err(|_| failed(Layer::Value))?;
    let dek_nonce = random_nonce();
    let wrapped_dek = kek
        .aead()
        .encrypt(
            &dek_nonce,
            &row_aad(Layer::DataKey, row, kek.version()),
            dek.expose(),
        )
        .map_err(|_| failed(Layer::DataKey))?;
    row.dek_nonce = dek_nonce.to_vec();
    row.wrapped_dek = wrapped_dek;
    row.value_nonce = value_nonce.to_vec();
    row.ciphertext = ciphertext;
    Ok(())
}

/// Decrypts a row with `kek`, which must be the row's KEK version.
pub fn open(kek: &Kek, row: &SecretRow) -> Result<SecretValue, SecretsError> {
    let (dek, value) = open_parts(kek, row)?;
    drop(dek);
    Ok(value)
}

/// Re-seals a row under `new_kek` without changing its value or data key: the data key is
/// unwrapped with `old_kek` and wrapped again, and the value layer is re-encrypted with a
/// fresh nonce because its associated data names the KEK version too. Checks the whole row
/// first, so a damaged row is reported rather than carried over.
pub fn rewrap(old_kek: &Kek, new_kek: &Kek, row: &SecretRow) -> Result<SecretRow, SecretsError> {
    let (dek, value) = open_parts(old_kek, row)?;
    let mut out = row.clone();
    out.kek_version = new_kek.version();
    seal_into(new_kek, &dek, value.expose(), &mut out)?;
    Ok(out)
}

fn open_parts(kek: &Kek, row: &SecretRow) -> Result<(KeyBytes, SecretValue), SecretsError> {
    let undecryptable = |layer| SecretsError::Undecryptable {
        tenant: row.tenant.clone(),
        name: row.name.clone(),
        version: row.version,
        layer,
    };
    if kek.version() != row.kek_version {
        return Err(SecretsError::Corrupt(format!(
            "secret {:?} version {} of tenant {:?} is sealed under KEK version {}, \
             not {}",
            row.name,
            row.version,
            row.tenant,
            row.kek_version,
            kek.version()
        )));
    }
    let dek = kek
        .aead()
        .decrypt(
            &row.dek_nonce,
            &row_aad(Layer::DataKey, row, row.kek_version),
            &row.wrapped_dek,
        )
        .map_err(|_| undecryptable(Layer::DataKey))?;
    let dek = KeyBytes::from_slice(&dek).ok_or_else(|| undecryptable(Layer::DataKey))?;
    let value = Aead::new(&dek)
        .decrypt(
            &row.value_nonce,
            &row_aad(Layer::Value, row, row.kek_version),
            &row.ciphertext,
        )
        .map_err(|_| undecryptable(Layer::Value))?;
    Ok((dek, SecretValue::from_zeroizing(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_never_collide() {
        // Moving bytes between tenant and name must change the associated data.
        let a = associated_data(Layer::Value, "ab", "c", 1, 1);
        let b = associated_data(Layer::Value, "a", "bc", 1, 1);
        assert_ne!(a, b);
        assert_ne!(
            associated_data(Layer::Value, "a", "b", 1, 1),
            associated_data(Layer::DataKey, "a", "b", 1, 1)
        );
    }

    #[test]
    fn keys_redact() {
        let key = KeyBytes::random();
        assert_eq!(format!("{key:?}"), "KeyBytes(<redacted>)");
        assert_eq!(key.to_string(), "<redacted key>");
        assert_eq!(format!("{:?}", Aead::new(&key)), "Aead(<redacted>)");
    }
}
