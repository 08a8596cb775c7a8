//! Standard Webhooks signing (symmetric scheme, spec v1.0.0): `webhook-signature` is
//! `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per secret, separated by
//! spaces, so a receiver that knows either the old or the new secret verifies during a
//! rotation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use secrecy::{ExposeSecret as _, SecretSlice};
use sha2::Sha256;

/// The three headers of a signed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`: Unix seconds of the attempt.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
}

/// One or more `whsec_` secrets; the first is the current one, the rest are kept while
/// receivers move to it.
pub struct Signer {
    keys: Vec<SecretSlice<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} secret(s))", self.keys.len())
    }
}

/// Why a secret was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// Nothing given.
    #[error("no secret given")]
    Empty,
    /// Not `whsec_<base64>`.
    #[error("secret #{0} is not `whsec_` followed by base64")]
    Format(usize),
    /// Decoded key outside 24–64 bytes.
    #[error("secret #{0} decodes to {1} bytes; Standard Webhooks secrets are 24 to 64 bytes")]
    Length(usize, usize),
}

impl Signer {
    /// Parses secrets separated by whitespace or commas (current first), each
    /// `whsec_<base64 of 24–64 random bytes>`.
    pub fn parse(text: &str) -> Result<Signer, SecretError> {
        let mut keys = Vec::new();
        for (i, s) in text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let b64 = s.strip_prefix("whsec_").ok_or(SecretError::Format(i + 1))?;
            let key = STANDARD
                .decode(b64)
                .map_err(|_| SecretError::Format(i + 1))?;
            if !(24..=64).contains(&key.len()) {
                return Err(SecretError::Length(i + 1, key.len()));
            }
            keys.push(SecretSlice::from(key));
        }
        if keys.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Signer { keys })
    }

    /// A fresh random secret, `whsec_` + base64 of 32 bytes.
    pub fn generate() -> String {
        let key: [u8; 32] = rand::random();
        format!("whsec_{}", STANDARD.encode(key))
    }

    /// A URL-safe MAC of `message` with the current secret: what signs the API's
    /// time-limited image links.
    pub fn mac(&self, message: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.keys[0].expose_secret())
            .expect("HMAC takes any key length");
        mac.update(message);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// True when `signature` is [`Signer::mac`] of `message` under any of the secrets
    /// (compared in constant time), so links stay valid through a rotation.
    pub fn verify_mac(&self, message: &[u8], signature: &str) -> bool {
        let Ok(sig) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        self.keys.iter().any(|k| {
            let mut mac = Hmac::<Sha256>::new_from_slice(k.expose_secret())
                .expect("HMAC takes any key length");
            mac.update(message);
            mac.verify_slice(&sig).is_ok()
        })
    }

    /// Signs one attempt of message `id` sent at `timestamp` (Unix seconds).
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> SignedHeaders {
        let ts = timestamp.to_string();
        let signature = self
            .keys
            .iter()
            .map(|k| {
                let mut mac = Hmac::<Sha256>::new_from_slice(k.expose_secret())
                    .expect("HMAC takes any key length");
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(ts.as_bytes());
                mac.update(b".");
                mac.update(body);
                format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
            })
            .collect::<Vec<_>>()
            .join(" ");
        SignedHeaders {
            id: id.to_string(),
            timestamp: ts,
            signature,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks reference libraries.
    #[test]
    fn matches_the_reference_vector() {
        let s = Signer::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let h = s.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            h.signature,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(h.timestamp, "1614265330");
    }

    #[test]
    fn link_macs_verify_under_any_secret_and_only_for_their_message() {
        let (a, b) = (Signer::generate(), Signer::generate());
        let old = Signer::parse(&a).unwrap();
        let rotated = Signer::parse(&format!("{b} {a}")).unwrap();
        let sig = old.mac(b"p/job/0/99");
        assert!(rotated.verify_mac(b"p/job/0/99", &sig));
        assert!(!rotated.verify_mac(b"p/job/1/99", &sig));
        assert!(!Signer::parse(&b).unwrap().verify_mac(b"p/job/0/99", &sig));
        assert!(!old.verify_mac(b"p/job/0/99", "not base64!"));
    }

    #[test]
    fn rotation_signs_with_every_secret() {
        let (a, b) = (Signer::generate(), Signer::generate());
        let both = Signer::parse(&format!("{b} {a}")).unwrap();
        let h = both.sign("msg_1", 1, b"{}");
        let parts: Vec<&str> = h.signature.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            Signer::parse(&b).unwrap().sign("msg_1", 1, b"{}").signature
        );
        assert_eq!(
            parts[1],
            Signer::parse(&a).unwrap().sign("msg_1", 1, b"{}").signature
        );
    }

    #[test]
    fn refuses_bad_secrets() {
        assert_eq!(Signer::parse(" ").unwrap_err(), SecretError::Empty);
        assert_eq!(Signer::parse("abc").unwrap_err(), SecretError::Format(1));
        assert_eq!(
            Signer::parse(&format!("{} whsec_AAAA", Signer::generate())).unwrap_err(),
            SecretError::Length(2, 3)
        );
    }
}
