//! Who may subscribe and publish: signed tokens (JWT) a browser can carry.
//!
//! A token is a JWT signed with the hub's key ([`TokenKey`]: an HS256
//! secret, or an RS256/ES256 public key), whose claims name the topics it
//! opens:
//!
//! ```json
//! {"sub": "user-42", "exp": 1765000000,
//!  "slosh": {"subscribe": ["user-42-*", "news"], "publish": ["user-42-outbox"]}}
//! ```
//!
//! A pattern is a topic name (that topic only) or a prefix ending in `*`
//! (every topic starting with it; `*` alone is every topic). `exp` and
//! `nbf` are optional and, when present, enforced with [`LEEWAY`]. A token
//! signed with another algorithm than the key's (`none` included) is
//! refused, whatever its claims.
//!
//! A request carries its token in `Authorization: Bearer …`, else in
//! `?access_token=…` (`EventSource` and WebSocket cannot set headers), else
//! in the token cookie (`slosh_auth` unless configured): the most explicit
//! place wins. The old publish token still works as a bearer.
//!
//! What needs one: subscribing to a private topic (`--private PATTERN`) and,
//! once a key is configured, publishing and deleting. A streaming
//! subscriber let in by a token that expires is ended at its expiry
//! ([`EndReason::TokenExpired`](crate::EndReason::TokenExpired)).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{Denied, Error};
use crate::http::Request;
use crate::name::MAX_NAME_LEN;

/// How far past `exp` (and before `nbf`) a token is still taken: clocks of
/// the signer and the hub differ a little.
pub const LEEWAY: u64 = 5;

/// The token cookie's name unless configured.
pub const DEFAULT_COOKIE: &str = "slosh_auth";

/// The key tokens are checked with.
#[derive(Clone)]
pub struct TokenKey {
    key: DecodingKey,
    algorithm: Algorithm,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_struct("TokenKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The secret is empty.
    #[error("the token secret is empty")]
    EmptySecret,
    /// The PEM text is neither an RSA nor an EC (P-256) key.
    #[error("not an RSA or EC P-256 key in PEM form ({0})")]
    BadPem(String),
    /// The token cookie cannot be sent as a header (its configured name
    /// holds characters a header value cannot).
    #[error("the token cookie cannot be sent: {0}")]
    Cookie(String),
}

impl TokenKey {
    /// An HS256 shared secret: the hub checks tokens with it and whoever
    /// mints them signs with the same bytes.
    pub fn secret(secret: &[u8]) -> Result<TokenKey, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        Ok(TokenKey {
            key: DecodingKey::from_secret(secret),
            algorithm: Algorithm::HS256,
        })
    }

    /// A public key in PEM form: RSA (tokens signed RS256) or EC P-256
    /// (ES256); the minting side keeps the private key.
    pub fn public_pem(pem: &[u8]) -> Result<TokenKey, KeyError> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(TokenKey {
                key,
                algorithm: Algorithm::RS256,
            });
        }
        DecodingKey::from_ec_pem(pem)
            .map(|key| TokenKey {
                key,
                algorithm: Algorithm::ES256,
            })
            .map_err(|error| KeyError::BadPem(error.to_string()))
    }

    /// The one algorithm tokens must be signed with.
    pub fn algorithm(&self) -> &'static str {
        match self.algorithm {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            _ => "HS256",
        }
    }
}

/// The key tokens are signed with, for an application that logs users in
/// and hands their pages a token ([`Signer::cookie`]), and for
/// `slosh-cli token`.
#[derive(Clone)]
pub struct Signer {
    key: EncodingKey,
    algorithm: Algorithm,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Signs HS256 with `secret`, the hub's `--jwt-secret`.
    pub fn secret(secret: &[u8]) -> Result<Signer, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        Ok(Signer {
            key: EncodingKey::from_secret(secret),
            algorithm: Algorithm::HS256,
        })
    }

    /// Signs RS256 or ES256 with a private key in PEM form, whose public
    /// half is the hub's `--jwt-public-key`.
    pub fn private_pem(pem: &[u8]) -> Result<Signer, KeyError> {
        if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
            return Ok(Signer {
                key,
                algorithm: Algorithm::RS256,
            });
        }
        EncodingKey::from_ec_pem(pem)
            .map(|key| Signer {
                key,
                algorithm: Algorithm::ES256,
            })
            .map_err(|error| KeyError::BadPem(error.to_string()))
    }

    /// The token granting `grant`, valid from now for its `ttl`.
    pub fn token(&self, grant: &Grant) -> Result<String, KeyError> {
        let now = unix_now();
        let claims = Claims {
            sub: grant.subject.clone(),
            exp: Some(now.saturating_add(grant.ttl.as_secs())),
            nbf: None,
            slosh: Rights {
                subscribe: grant.subscribe.clone(),
                publish: grant.publish.clone(),
            },
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.key)
            .map_err(|error| KeyError::BadPem(error.to_string()))
    }

    /// A `Set-Cookie` value carrying the token for `grant` in cookie
    /// `name` ([`DEFAULT_COOKIE`] unless the hub was told otherwise):
    /// `HttpOnly` (page scripts never see it), `SameSite=Lax`, `Path=/`,
    /// living as long as the token. Add `; Secure` when serving HTTPS.
    pub fn cookie(&self, grant: &Grant, name: &str) -> Result<String, KeyError> {
        let token = self.token(grant)?;
        Ok(format!(
            "{name}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
            grant.ttl.as_secs()
        ))
    }
}

/// What a token allows, for [`Signer::token`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// Who it is for (`sub`), shown nowhere but useful in logs of the
    /// minting side.
    pub subject: Option<String>,
    /// Topic patterns it may subscribe to.
    pub subscribe: Vec<String>,
    /// Topic patterns it may publish to and delete.
    pub publish: Vec<String>,
    /// How long it is valid.
    pub ttl: Duration,
}

/// A token's claims, as signed.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default)]
    slosh: Rights,
}

/// The `slosh` claim.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Rights {
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

/// A topic pattern: a name, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    prefix: bool,
}

/// Why a pattern is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a topic pattern: a topic name, or a prefix of one ending in * (A-Z a-z 0-9 _ -)"
)]
pub struct PatternError(pub String);

impl Pattern {
    /// Parses `text`: a topic name, or a prefix of one followed by `*`.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let (body, prefix) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        let fits = body.len() <= MAX_NAME_LEN
            && (prefix || !body.is_empty())
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !fits {
            return Err(PatternError(text.to_string()));
        }
        Ok(Pattern {
            text: body.to_string(),
            prefix,
        })
    }

    /// Whether topic `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        if self.prefix {
            name.starts_with(&self.text)
        } else {
            name == self.text
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)?;
        if self.prefix {
            f.write_str("*")?;
        }
        Ok(())
    }
}

/// Whether `text`, a pattern from a token, matches `name`. A pattern that
/// is not one matches nothing.
fn pattern_matches(text: &str, name: &str) -> bool {
    Pattern::parse(text).is_ok_and(|pattern| pattern.matches(name))
}

/// The hub's token rules: its key, its private topics, its cookie.
#[derive(Debug, Default)]
pub(crate) struct Auth {
    key: Option<TokenKey>,
    private: Vec<Pattern>,
    cookie: String,
}

/// A token that checked out.
#[derive(Debug)]
pub(crate) struct Token {
    rights: Rights,
    /// The first second it is not taken any more (past `exp` and the
    /// leeway), in seconds since the Unix epoch.
    pub(crate) until: Option<u64>,
}

impl Auth {
    pub(crate) fn new(
        key: Option<TokenKey>,
        private: Vec<Pattern>,
        cookie: Option<String>,
    ) -> Auth {
        Auth {
            key,
            private,
            cookie: cookie.unwrap_or_else(|| DEFAULT_COOKIE.to_string()),
        }
    }

    /// The name of the token cookie.
    pub(crate) fn cookie(&self) -> &str {
        &self.cookie
    }

    /// Whether a key is configured (then publishing needs a token).
    pub(crate) fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// Whether any topic is private.
    pub(crate) fn has_private(&self) -> bool {
        !self.private.is_empty()
    }

    /// Whether subscribing to `name` needs a token.
    pub(crate) fn is_private(&self, name: &str) -> bool {
        self.private.iter().any(|pattern| pattern.matches(name))
    }

    /// The token `request` carries, from the most explicit place: the
    /// bearer, the query, the cookie.
    pub(crate) fn presented<'a>(&self, request: &Request<'a>) -> Option<&'a str> {
        // An empty value is no token: it does not hide one further down.
        let given = |token: &&str| !token.is_empty();
        bearer(request)
            .filter(given)
            .or_else(|| request.param("access_token").filter(given))
            .or_else(|| crate::session::find_named(&request.cookies, &self.cookie).filter(given))
    }

    /// Checks `token`'s signature, algorithm and times.
    pub(crate) fn verify(&self, token: &str) -> Result<Token, Error> {
        let Some(key) = &self.key else {
            return Err(Error::BadToken("this server checks no tokens".into()));
        };
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = LEEWAY;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
            Ok(data) => Ok(Token {
                // jsonwebtoken takes a token until the second `exp + LEEWAY`
                // is over (it compares whole seconds): refused from the next.
                until: data.claims.exp.map(|exp| exp.saturating_add(LEEWAY + 1)),
                rights: data.claims.slosh,
            }),
            Err(error) => Err(match error.kind() {
                ErrorKind::ExpiredSignature => Error::Forbidden(Denied::Expired),
                ErrorKind::ImmatureSignature => Error::Forbidden(Denied::NotYetValid),
                ErrorKind::InvalidSignature => Error::BadToken("its signature is wrong".into()),
                ErrorKind::InvalidAlgorithm => {
                    Error::BadToken(format!("it must be signed with {}", key.algorithm()))
                }
                _ => Error::BadToken("it is not a well-formed JWT".into()),
            }),
        }
    }
}

impl Token {
    /// Whether it allows subscribing to `name`.
    pub(crate) fn may_subscribe(&self, name: &str) -> bool {
        self.rights
            .subscribe
            .iter()
            .any(|pattern| pattern_matches(pattern, name))
    }

    /// Whether it allows publishing to (and deleting) `name`.
    pub(crate) fn may_publish(&self, name: &str) -> bool {
        self.rights
            .publish
            .iter()
            .any(|pattern| pattern_matches(pattern, name))
    }
}

/// The credentials of an `Authorization: Bearer …` header (the scheme is
/// case-insensitive, RFC 9110 §11.1).
pub(crate) fn bearer<'a>(request: &Request<'a>) -> Option<&'a str> {
    request
        .authorization
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credentials)| credentials.trim())
}

/// The instant at `until` (seconds since the Unix epoch), seen from `now`.
pub(crate) fn instant_at(until: u64, now: std::time::Instant) -> std::time::Instant {
    let at = UNIX_EPOCH + Duration::from_secs(until);
    now + at.duration_since(SystemTime::now()).unwrap_or_default()
}

/// Seconds since the Unix epoch now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_names_or_prefixes() {
        let matches = |pattern: &str, name: &str| Pattern::parse(pattern).unwrap().matches(name);
        assert!(matches("news", "news"));
        assert!(!matches("news", "news2"));
        assert!(!matches("news", "new"));
        assert!(matches("user-42-*", "user-42-inbox"));
        assert!(matches("user-42-*", "user-42-"));
        assert!(!matches("user-42-*", "user-4"));
        assert!(!matches("user-42-*", "user-420"));
        assert!(matches("*", "anything"));
        for bad in ["", "a*b", "**", "a b", "a/*", "x.y", "*a", "é"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(Pattern::parse(&long).is_err());
        assert!(Pattern::parse(&format!("{}*", &long[1..])).is_ok());
    }

    #[test]
    fn a_minted_token_checks_out_with_its_rights_and_expiry() {
        let signer = Signer::secret(b"s3cret").unwrap();
        let auth = Auth::new(Some(TokenKey::secret(b"s3cret").unwrap()), vec![], None);
        let grant = Grant {
            subject: Some("u".into()),
            subscribe: vec!["user-1-*".into(), "a*b".into()],
            publish: vec!["out".into()],
            ttl: Duration::from_secs(60),
        };
        let token = auth.verify(&signer.token(&grant).unwrap()).unwrap();
        assert!(token.may_subscribe("user-1-x"));
        assert!(!token.may_subscribe("user-2-x"));
        assert!(
            !token.may_subscribe("axb"),
            "a malformed pattern matches nothing"
        );
        assert!(token.may_publish("out") && !token.may_publish("user-1-x"));
        let until = token.until.unwrap();
        assert!((unix_now() + 61..=unix_now() + 62 + LEEWAY).contains(&until));
        // Another secret, another algorithm's key: refused.
        let other = Auth::new(Some(TokenKey::secret(b"other").unwrap()), vec![], None);
        assert!(matches!(
            other.verify(&signer.token(&grant).unwrap()),
            Err(Error::BadToken(_))
        ));
    }
}
