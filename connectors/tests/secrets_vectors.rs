//! Wycheproof AES-GCM vectors (the 256-bit key, 96-bit IV, 128-bit tag groups — the only
//! parameters the secrets store uses) through the same encrypt/decrypt path both envelope
//! layers use: every valid vector encrypts to the expected ciphertext and tag and decrypts
//! back, and every invalid one is rejected.

use std::path::PathBuf;

use connectors::secrets::envelope::{Aead, NONCE_BYTES};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    #[serde(rename = "testGroups")]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    #[serde(rename = "keySize")]
    key_size: u32,
    #[serde(rename = "ivSize")]
    iv_size: u32,
    #[serde(rename = "tagSize")]
    tag_size: u32,
    tests: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    #[serde(rename = "tcId")]
    id: u32,
    comment: String,
    key: String,
    iv: String,
    aad: String,
    msg: String,
    ct: String,
    tag: String,
    result: String,
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length in {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/aes_gcm_test.json")
}

#[test]
fn wycheproof_aes_256_gcm_96_bit_iv() {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the Wycheproof vectors at {} ({e}); they ship in shared/vectors beside \
             the checkout",
            path.display()
        )
    });
    let file: File = serde_json::from_str(&text).expect("vector file parses");
    let (mut valid, mut invalid) = (0, 0);
    for group in file
        .groups
        .iter()
        .filter(|g| g.key_size == 256 && g.iv_size == 96 && g.tag_size == 128)
    {
        for v in &group.tests {
            let what = format!("tcId {} ({})", v.id, v.comment);
            let aead = Aead::from_slice(&hex(&v.key)).expect("256-bit key");
            let iv: [u8; NONCE_BYTES] = hex(&v.iv).try_into().expect("96-bit iv");
            let (aad, msg) = (hex(&v.aad), hex(&v.msg));
            let mut sealed = hex(&v.ct);
            sealed.extend(hex(&v.tag));
            match v.result.as_str() {
                "valid" => {
                    let ours = aead.encrypt(&iv, &aad, &msg).expect("encrypts");
                    assert_eq!(ours, sealed, "{what}: ciphertext and tag differ");
                    let opened = aead.decrypt(&iv, &aad, &sealed).expect(&what);
                    assert_eq!(*opened, msg, "{what}: plaintext differs");
                    valid += 1;
                }
                "invalid" => {
                    assert!(
                        aead.decrypt(&iv, &aad, &sealed).is_err(),
                        "{what}: an invalid vector was accepted"
                    );
                    invalid += 1;
                }
                other => panic!("{what}: unexpected result {other:?}"),
            }
        }
    }
    // The file's 256/96/128 groups hold 39 valid and 27 invalid vectors; a filter that
    // silently matched nothing must not pass.
    assert_eq!((valid, invalid), (39, 27));
}

#[test]
fn a_nonce_of_the_wrong_size_is_rejected() {
    let aead = Aead::from_slice(&[7; 32]).expect("key");
    let sealed = aead
        .encrypt(&[1; NONCE_BYTES], b"", b"x")
        .expect("encrypts");
    assert!(aead.decrypt(&[1; 8], b"", &sealed).is_err());
    assert!(aead.decrypt(&[1; 16], b"", &sealed).is_err());
    assert!(
        Aead::from_slice(&[7; 16]).is_none(),
        "AES-128 keys are not accepted"
    );
}
