//! `idmint server`

use super::Exit;
use crate::args::ServerArgs;
use crate::output::emit;
use anyhow::{Context, Result};
use idmint_server::{ServeOptions, ServerInfo};

pub async fn run(args: ServerArgs) -> Result<Exit> {
    let opts = ServeOptions {
        config: args.config,
        dev: args.dev,
        data_dir: args.data_dir,
        listen: args.listen,
        store: args.store,
    };
    if args.check_config {
        let summary = idmint_server::check_config(&opts).context("configuration check failed")?;
        emit(&format!("{}\n", summary.trim_end()))?;
        return Ok(Exit::Success);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let dev = opts.dev;
    // Print the getting-started hints once the port is known; the server
    // itself logs that it listens.
    let hints = tokio::spawn(async move {
        if let Ok(info) = rx.await {
            if dev {
                eprint!("{}", dev_hints(&info));
            }
        }
    });
    let result = idmint_server::serve(opts, Some(tx)).await;
    hints.abort();
    result.context("the server stopped with an error")?;
    Ok(Exit::Success)
}

/// What to do next with a fresh dev server.
pub fn dev_hints(info: &ServerInfo) -> String {
    let mut s = format!(
        "\nidmint dev server on {url}  (data: {data})\n",
        url = info.base_url,
        data = info.data_dir.display()
    );
    if let Some(audit) = &info.audit_file {
        s.push_str(&format!("audit log: {}\n", audit.display()));
    }
    s.push_str(&format!(
        "\nTry it, in another shell:\n  export IDMINT_ADDR={url}\n  idmint dev token | idmint login --token -\n  idmint whoami\n  idmint creds demo-api\n\n",
        url = info.base_url
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_address_and_next_steps() {
        let info = ServerInfo {
            addr: "127.0.0.1:4242".parse().unwrap(),
            base_url: "http://127.0.0.1:4242".into(),
            data_dir: "/tmp/d".into(),
            audit_file: Some("/tmp/d/audit.jsonl".into()),
            demo_issuer: Some("http://127.0.0.1:4242/demo-idp".into()),
        };
        let h = dev_hints(&info);
        assert!(
            h.contains("export IDMINT_ADDR=http://127.0.0.1:4242"),
            "{h}"
        );
        assert!(
            h.contains("/tmp/d/audit.jsonl") && h.contains("idmint login --token -"),
            "{h}"
        );
    }
}
