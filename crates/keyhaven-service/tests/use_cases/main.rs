//! The use cases' own tests: the rules of `keyhaven-service`, called directly (no HTTP),
//! with a clock the tests move by hand, on SQLite and PostgreSQL with the same code.
//!
//! Each test is an `async fn(&Env)` in a module per noun. `on_both_backends!` at the
//! bottom of each module turns every listed function into two `#[tokio::test]`s,
//! `<noun>::sqlite::<name>` and `<noun>::postgres::<name>`, each on a fresh, migrated
//! database with the organization "Acme" and its first super-admin. PostgreSQL tests
//! print `*** SKIPPED PostgreSQL test … ***` and pass when no server is reachable,
//! except under `CI=true`, where they fail (the store's `testing` helpers decide).

/// Runs each listed `async fn(&Env)` of the calling module on both backends.
macro_rules! on_both_backends {
    ($($t:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $t() {
                    let env = crate::support::Env::sqlite().await;
                    super::$t(&env).await;
                    env.finish().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $t() {
                    let Some(env) = crate::support::Env::postgres(
                        concat!(module_path!(), "::", stringify!($t)),
                    )
                    .await
                    else {
                        return;
                    };
                    super::$t(&env).await;
                    env.finish().await;
                }
            )*
        }
    };
}

mod api_keys;
mod audit;
mod credits;
mod roles;
mod service_accounts;
mod sessions;
mod support;
mod users;
