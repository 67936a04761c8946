mod support;
use idmint_authn::Clock;
use serde_json::json;
use std::time::Instant;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf() {
    let idp = TestIdp::start().await;
    let keys = [TestKey::rsa("r"), TestKey::p256("e"), TestKey::ed25519("d")];
    idp.set_keys(&[&keys[0], &keys[1], &keys[2]]);
    let clock = clock();
    let v = verifier(config(&idp, json!({"preset":"generic","required_claims":["repository"]})), &clock);
    v.prefetch().await.unwrap();
    for key in &keys {
        let tokens: Vec<String> = (0..2000).map(|_| key.sign(&claims(&idp, clock.now()))).collect();
        let tokens = std::sync::Arc::new(tokens);
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for t in 0..2 {
            let (v, tokens) = (v.clone(), tokens.clone());
            set.spawn(async move {
                for _ in 0..5 {
                    for tok in tokens.iter().skip(t).step_by(2) { v.verify(tok).await.unwrap(); }
                }
            });
        }
        while set.join_next().await.is_some() {}
        let n = 10_000.0;
        eprintln!("{}: {:.0} verifies/s on 2 threads", key.default_alg(), n / start.elapsed().as_secs_f64());
    }
}
