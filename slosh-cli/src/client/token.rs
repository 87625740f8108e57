//! `slosh-cli token`: mints a signed token for a server's `--jwt-secret`
//! (or the private half of its `--jwt-public-key`), for scripts and for
//! trying private topics by hand.

use std::process::ExitCode;

use slosh_core::{Grant, Signer};

use super::TokenArgs;

/// Prints the token `args` ask for, one line on stdout.
pub(super) fn run(args: TokenArgs) -> ExitCode {
    let signer = match (&args.secret, &args.private_key) {
        (Some(secret), _) => Signer::secret(secret.as_bytes()),
        (None, Some(path)) => match std::fs::read(path) {
            Ok(pem) => Signer::private_pem(&pem),
            Err(error) => {
                eprintln!("slosh-cli token: --private-key {}: {error}", path.display());
                return ExitCode::from(2);
            }
        },
        (None, None) => {
            eprintln!("slosh-cli token: give --secret (HS256) or --private-key FILE (RS256/ES256)");
            return ExitCode::from(2);
        }
    };
    let grant = Grant {
        subject: args.sub,
        subscribe: args.subscribe.iter().map(ToString::to_string).collect(),
        publish: args.publish.iter().map(ToString::to_string).collect(),
        ttl: args.ttl,
    };
    match signer.and_then(|signer| signer.token(&grant)) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("slosh-cli token: {error}");
            ExitCode::from(2)
        }
    }
}
