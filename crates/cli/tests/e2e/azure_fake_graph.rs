//! Azure end to end against a **fake** Entra ID + Microsoft Graph
//! ([`FakeGraph`], in process): it is not Azure, but it checks every
//! request against Microsoft's documented shapes and really enforces the
//! credentials (a removed secret is refused; an assertion must match a
//! federated identity credential and verify against idmint's JWKS).

use crate::common;
use crate::db_support;

use common::bin;
use db_support::{api_error, login_app, toml_table, APP_SUBJECT, POLICY};
use idmint_client::proto::{Credential, CredsRequest};
use idmint_testkit::fake_graph::{FakeGraph, FederatedCredential};
use idmint_testkit::{IdmintServer, ServerSpec, TestJwks};

const TENANT: &str = "contoso";
const ADMIN_APP: &str = "11111111-1111-1111-1111-111111111111";
const TARGET_APP: &str = "22222222-2222-2222-2222-222222222222";
const FED_APP: &str = "33333333-3333-3333-3333-333333333333";
const ADMIN_SECRET: &str = "admin-secret-value";
const AUDIENCE: &str = "api://AzureADTokenExchange";

struct Env {
    graph: FakeGraph,
    jwks: TestJwks,
    server: IdmintServer,
}

async fn setup(own_federated: bool) -> anyhow::Result<Env> {
    let graph = FakeGraph::start(TENANT, ADMIN_APP).await?;
    graph.set_admin_secret(ADMIN_SECRET);
    let object_id = graph.add_application(TARGET_APP);
    graph.add_application(FED_APP);
    let jwks = TestJwks::start().await?;
    let credential = if own_federated {
        "federated_credential = true".to_string()
    } else {
        "client_secret_env = \"IDMINT_TEST_AZURE_SECRET\"".to_string()
    };
    let issuer = toml_table(&format!(
        r#"
name = "azure"
tenant_id = "{TENANT}"
client_id = "{ADMIN_APP}"
{credential}
authority = "{url}"
graph = "{url}"
timeout = "3s"
"#,
        url = graph.url()
    ))?;
    let mut spec =
        ServerSpec::with_oidc(vec![db_support::oidc(&jwks)]).with_issuer("azure", issuer);
    spec.roles = format!(
        r#"
[[role]]
name = "azure/app-secret"
issuer = "azure"
max_ttl = "1h"
default_ttl = "10m"
[role.azure]
mode = "client_secret"
client_id = "{TARGET_APP}"
application_object_id = "{object_id}"

[[role]]
name = "azure/app-federated"
issuer = "azure"
max_ttl = "10m"
[role.azure]
mode = "federated"
client_id = "{FED_APP}"
"#
    );
    spec.policies = vec![("azure.cedar".to_string(), POLICY.to_string())];
    spec.env = vec![("IDMINT_TEST_AZURE_SECRET".into(), ADMIN_SECRET.into())];
    let server = IdmintServer::start(bin(), spec).await?;
    Ok(Env {
        graph,
        jwks,
        server,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_is_added_works_and_is_removed_at_revocation() -> anyhow::Result<()> {
    let env = setup(false).await?;
    let app = login_app(&env.server, &env.jwks).await?;
    let resp = app
        .client
        .creds("azure/app-secret", &CredsRequest::default())
        .await?;
    let Credential::AzureClientSecret {
        tenant_id,
        client_id,
        client_secret,
        key_id,
        expiration,
    } = &resp.credential
    else {
        anyhow::bail!("expected a client secret, got {:?}", resp.credential);
    };
    assert_eq!(
        (tenant_id.as_str(), client_id.as_str()),
        (TENANT, TARGET_APP)
    );
    assert_eq!(
        expiration,
        &idmint_core::UnixTime(resp.expires_at).rfc3339()
    );
    let secrets = env.graph.passwords(TARGET_APP);
    assert_eq!(
        secrets,
        [(key_id.clone(), format!("idmint-{}", resp.lease_id))]
    );
    // The secret works at the token endpoint.
    env.graph
        .client_credentials(TARGET_APP, Some(client_secret), None)
        .await
        .map_err(anyhow::Error::msg)?;

    // Revocation removes it; it stops working; a repeat is fine.
    assert_eq!(
        app.client.revoke_lease(&resp.lease_id).await?.state,
        "revoked"
    );
    assert!(env.graph.passwords(TARGET_APP).is_empty());
    let e = env
        .graph
        .client_credentials(TARGET_APP, Some(client_secret), None)
        .await
        .unwrap_err();
    assert!(e.starts_with("AADSTS7000215"), "{e}");
    assert_eq!(
        app.client.revoke_lease(&resp.lease_id).await?.state,
        "revoked"
    );
    let calls = env.graph.calls();
    assert!(
        calls.iter().any(|c| c.ends_with("/addPassword"))
            && calls.iter().any(|c| c.ends_with("/removePassword")),
        "{calls:?}"
    );

    // Graph down: a clear 503 naming Azure, no live lease.
    drop(env.graph);
    let e = app
        .client
        .creds("azure/app-secret", &CredsRequest::default())
        .await
        .unwrap_err();
    let (status, code, message) = api_error(&e);
    assert_eq!(
        (status, code.as_str()),
        (503, "target_unavailable"),
        "{message}"
    );
    assert!(message.contains("Azure is unavailable"), "{message}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_assertion_is_accepted_only_for_the_trusted_subject() -> anyhow::Result<()> {
    let env = setup(false).await?;
    let app = login_app(&env.server, &env.jwks).await?;
    let resp = app
        .client
        .creds("azure/app-federated", &CredsRequest::default())
        .await?;
    let Credential::AzureClientAssertion {
        client_id,
        assertion,
        ..
    } = &resp.credential
    else {
        anyhow::bail!("expected an assertion, got {:?}", resp.credential);
    };
    assert_eq!(client_id, FED_APP);
    let issuer = env.server.base_url().trim_end_matches('/').to_string();
    // Nobody trusts idmint yet.
    let e = env
        .graph
        .client_credentials(FED_APP, None, Some(assertion))
        .await
        .unwrap_err();
    assert!(e.starts_with("AADSTS70021"), "{e}");
    // A credential for another subject does not match either.
    env.graph.add_federated_credential(
        FED_APP,
        FederatedCredential {
            issuer: issuer.clone(),
            subject: "repo:acme/other:ref:refs/heads/main".into(),
            audience: AUDIENCE.into(),
        },
    );
    assert!(env
        .graph
        .client_credentials(FED_APP, None, Some(assertion))
        .await
        .is_err());
    env.graph.add_federated_credential(
        FED_APP,
        FederatedCredential {
            issuer,
            subject: APP_SUBJECT.into(),
            audience: AUDIENCE.into(),
        },
    );
    env.graph
        .client_credentials(FED_APP, None, Some(assertion))
        .await
        .map_err(anyhow::Error::msg)?;
    // A tampered assertion (a claim changed, signature kept) fails the
    // signature check.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = assertion.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1])?)?;
    claims["exp"] = serde_json::json!(claims["exp"].as_i64().unwrap_or(0) + 60);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    let e = env
        .graph
        .client_credentials(FED_APP, None, Some(&forged))
        .await
        .unwrap_err();
    assert!(e.contains("signature"), "{e}");
    assert!(
        env.graph.calls().is_empty(),
        "no Graph call for federated roles"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idmint_can_call_graph_with_its_own_signed_assertion() -> anyhow::Result<()> {
    let env = setup(true).await?;
    env.graph.add_federated_credential(
        ADMIN_APP,
        FederatedCredential {
            issuer: env.server.base_url().trim_end_matches('/').to_string(),
            subject: "idmint:azure".into(),
            audience: AUDIENCE.into(),
        },
    );
    let app = login_app(&env.server, &env.jwks).await?;
    let resp = app
        .client
        .creds("azure/app-secret", &CredsRequest::default())
        .await?;
    assert!(matches!(
        resp.credential,
        Credential::AzureClientSecret { .. }
    ));
    assert_eq!(env.graph.passwords(TARGET_APP).len(), 1);
    Ok(())
}
