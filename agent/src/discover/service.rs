//! Service identity (`service.name`, `service.namespace`, instance id) of a process.
//!
//! Name precedence: the process's `OTEL_SERVICE_NAME`, then `service.name` in its
//! `OTEL_RESOURCE_ATTRIBUTES`, then the selector's `name`, then the global
//! `BEYLA_SERVICE_NAME`/`service_name`, then a name derived from the process
//! ([`derive_name`]). Namespace: `service.namespace` from the process's resource attributes,
//! then the selector's, then the global one, else empty.
//!
//! For a process in a Kubernetes pod ([`identify_with_k8s`]), Kubernetes comes before the
//! derived name: the pod annotation `resource.opentelemetry.io/service.name`, then the label
//! `app.kubernetes.io/name`, then the owner (deployment > replicaset > statefulset >
//! daemonset > cronjob > job > pod); the namespace from the annotation
//! `resource.opentelemetry.io/service.namespace`, then the label `app.kubernetes.io/part-of`,
//! then the pod's namespace.
//!
//! The instance id is `hostname:pid`, as Beyla/OBI compose it
//! (`pkg/internal/traces/read_decorator.go`, `HostNamePIDDecorator`).

use std::path::Path;

use super::proc::ProcessInfo;
use super::selector::Criteria;

/// OpenTelemetry service identity of one instrumented process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ServiceId {
    pub name: String,
    pub namespace: String,
    pub instance_id: String,
}

pub fn instance_id(hostname: &str, pid: u32) -> String {
    format!("{hostname}:{pid}")
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

pub fn identify(
    p: &ProcessInfo,
    selector: Option<&Criteria>,
    global_name: Option<&str>,
    global_namespace: Option<&str>,
    hostname: &str,
) -> ServiceId {
    identify_with_k8s(p, selector, global_name, global_namespace, hostname, None)
}

/// The service name and namespace Kubernetes suggests for a process (see
/// [`crate::kube::Store::service_name`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K8sNames {
    pub name: String,
    pub namespace: String,
}

/// [`identify`] for a process in a Kubernetes pod: `k8s` comes after the process's own
/// settings, the selector's and the global ones, and before the name derived from the
/// executable.
pub fn identify_with_k8s(
    p: &ProcessInfo,
    selector: Option<&Criteria>,
    global_name: Option<&str>,
    global_namespace: Option<&str>,
    hostname: &str,
    k8s: Option<&K8sNames>,
) -> ServiceId {
    let name = non_empty(p.env.service_name.as_deref())
        .or_else(|| non_empty(selector.and_then(|c| c.name.as_deref())))
        .or_else(|| non_empty(global_name))
        .or_else(|| non_empty(k8s.map(|k| k.name.as_str())))
        .map(str::to_string)
        .unwrap_or_else(|| derive_name(p));
    let namespace = non_empty(p.env.service_namespace.as_deref())
        .or_else(|| non_empty(selector.and_then(|c| c.namespace.as_deref())))
        .or_else(|| non_empty(global_namespace))
        .or_else(|| non_empty(k8s.map(|k| k.namespace.as_str())))
        .unwrap_or_default()
        .to_string();
    ServiceId { name, namespace, instance_id: instance_id(hostname, p.pid) }
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// File name without its last extension (`/srv/app.py` -> `app`).
fn stem(path: &str) -> &str {
    let b = base(path);
    match b.rfind('.') {
        Some(i) if i > 0 => &b[..i],
        _ => b,
    }
}

/// Strips a trailing version (`shop-1.4.2-SNAPSHOT` -> `shop`).
fn strip_version(name: &str) -> &str {
    let bytes = name.as_bytes();
    for (i, w) in bytes.windows(2).enumerate() {
        if w[0] == b'-' && w[1].is_ascii_digit() && i > 0 {
            return &name[..i];
        }
    }
    name
}

/// Name from a script path; generic entry files (`index.js`) use their directory instead.
fn script_name(path: &str) -> String {
    let s = stem(path);
    if matches!(s, "index" | "main" | "__main__" | "app" | "server") {
        let mut parts = path.rsplit('/');
        parts.next();
        if let Some(dir) = parts.next().filter(|d| !d.is_empty() && *d != "." && *d != "..") {
            if !matches!(dir, "src" | "dist" | "build" | "lib" | "bin") {
                return dir.to_string();
            }
        }
    }
    s.to_string()
}

/// First positional argument, skipping options; `with_value` lists options taking a
/// separate value. Returns the index into `args`.
fn first_positional(args: &[String], with_value: &[&str]) -> Option<usize> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            return (i + 1 < args.len()).then_some(i + 1);
        }
        if a.starts_with('-') && a.len() > 1 {
            if !a.contains('=') && with_value.contains(&a) {
                i += 1;
            }
            i += 1;
            continue;
        }
        return Some(i);
    }
    None
}

/// Module name from an ASGI/WSGI spec such as `proj.wsgi:application` -> `proj`.
fn app_module(spec: &str) -> String {
    let module = spec.split(':').next().unwrap_or(spec);
    let parts: Vec<&str> = module.split('.').filter(|p| !p.is_empty()).collect();
    let generic = |p: &str| matches!(p, "wsgi" | "asgi" | "main" | "app" | "server" | "application" | "__main__");
    match parts.as_slice() {
        [] => spec.to_string(),
        [one] => one.to_string(),
        [.., prev, last] if generic(last) => prev.to_string(),
        [.., last] => last.to_string(),
    }
}

#[rustfmt::skip]
const PY_SERVERS: &[&str] = &[
    "gunicorn", "uvicorn", "hypercorn", "daphne", "waitress-serve", "granian",
];
#[rustfmt::skip]
const PY_SERVER_OPTS: &[&str] = &[
    "-b", "--bind", "-w", "--workers", "-k", "--worker-class", "-c", "--config", "-t", "--timeout",
    "--threads", "--host", "--port", "--log-level", "--log-config", "--env-file", "--app-dir",
    "--uds", "--root-path", "--name", "-n", "--chdir", "--pythonpath", "--access-logfile",
    "--error-logfile", "--interface", "-u", "--listen", "-e", "--workers-per-core",
    "--limit-concurrency",
];

/// App module of a Python server runner invocation (`uvicorn main:app ...`).
fn python_server_app(args: &[String]) -> Option<String> {
    let i = first_positional(args, PY_SERVER_OPTS)?;
    Some(app_module(&args[i]))
}

fn python_name(args: &[String]) -> Option<String> {
    let opts = ["-W", "-X", "--check-hash-based-pycs"];
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-c" => return None,
            "-m" => {
                let module = args.get(i + 1)?;
                if PY_SERVERS.contains(&module.as_str()) || module == "flask" {
                    return python_server_app(&args[i + 2..]).or_else(|| Some(module.clone()));
                }
                return Some(app_module(module));
            }
            _ if a.starts_with("-m") && a.len() > 2 => return Some(app_module(&a[2..])),
            _ if a.starts_with('-') && a.len() > 1 => {
                if opts.contains(&a) {
                    i += 1;
                }
                i += 1;
            }
            _ => {
                let script = base(a);
                if PY_SERVERS.contains(&script) {
                    return python_server_app(&args[i + 1..]).or_else(|| Some(script.to_string()));
                }
                return Some(script_name(a));
            }
        }
    }
    None
}

fn node_name(args: &[String]) -> Option<String> {
    #[rustfmt::skip]
    let opts = [
        "-r", "--require", "--import", "--loader", "--experimental-loader", "-C", "--conditions",
        "--env-file", "--title",
    ];
    if args.iter().any(|a| matches!(a.as_str(), "-e" | "--eval" | "-p" | "--print")) {
        return None;
    }
    let i = first_positional(args, &opts)?;
    let script = args[i].as_str();
    let b = base(script);
    if matches!(b, "npm" | "npx" | "yarn" | "pnpm" | "npm-cli.js" | "yarn.js") {
        return Some(stem(b).trim_end_matches("-cli").to_string());
    }
    Some(script_name(script))
}

fn java_name(args: &[String]) -> Option<String> {
    #[rustfmt::skip]
    let opts = [
        "-cp", "-classpath", "--class-path", "-p", "--module-path", "--upgrade-module-path",
        "--add-modules", "--add-opens", "--add-exports", "--add-reads", "--patch-module",
        "--limit-modules", "--enable-native-access",
    ];
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-jar" => return args.get(i + 1).map(|j| strip_version(stem(j)).to_string()),
            "-m" | "--module" => {
                let m = args.get(i + 1)?;
                let class = m.rsplit('/').next().unwrap_or(m);
                return Some(class.rsplit('.').next().unwrap_or(class).to_string());
            }
            _ if a.starts_with('-') => {
                if opts.contains(&a) {
                    i += 1;
                }
                i += 1;
            }
            _ => return Some(a.rsplit('.').next().unwrap_or(a).to_string()),
        }
    }
    None
}

/// Generic interpreter `[options] script [args]`: ruby, perl, php, dotnet.
fn script_interpreter_name(args: &[String], opts: &[&str], code_opts: &[&str]) -> Option<String> {
    if args.iter().any(|a| code_opts.contains(&a.as_str())) {
        return None;
    }
    let i = first_positional(args, opts)?;
    Some(script_name(&args[i]))
}

/// Name from a rewritten process title: `gunicorn: master [app:app]`, `puma 6.4.0 (tcp://0.0.0.0:3000) [shop]`.
fn title_name(title: &str) -> Option<String> {
    let inner = |s: &str| {
        let open = s.rfind('[')?;
        let close = s[open..].find(']')? + open;
        Some(s[open + 1..close].to_string()).filter(|s| !s.is_empty())
    };
    if title.starts_with("gunicorn: ") {
        return inner(title).map(|spec| app_module(&spec));
    }
    if title.starts_with("puma ") || title.starts_with("puma: ") {
        return inner(title);
    }
    None
}

/// Service name derived from the executable and command line when nothing names the
/// service: interpreters are named after the program they run (`python3 app.py` -> `app`,
/// `java -jar shop-1.2.jar` -> `shop`, `node server.js` -> `server`), anything else after
/// the executable's base name. Beyla itself always uses the executable base name here.
pub fn derive_name(p: &ProcessInfo) -> String {
    let exe_base = p.exe.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let argv0 = p.cmdline.first().map(String::as_str).unwrap_or_default();
    let fallback = || {
        if !exe_base.is_empty() {
            exe_base.to_string()
        } else if !p.comm.is_empty() {
            p.comm.clone()
        } else {
            base(argv0).to_string()
        }
    };
    if p.cmdline.len() == 1 && argv0.contains(' ') {
        if let Some(n) = title_name(argv0) {
            return n;
        }
    }
    let args = p.cmdline.get(1..).unwrap_or_default();
    let exe = exe_base.to_ascii_lowercase();
    let derived = if exe.starts_with("python") || exe.starts_with("pypy") {
        python_name(args)
    } else if exe == "node" || exe == "nodejs" || exe == "bun" || exe == "deno" {
        let args = if exe == "deno" && args.first().is_some_and(|a| a == "run") { &args[1..] } else { args };
        node_name(args)
    } else if exe == "java" {
        java_name(args)
    } else if exe.starts_with("ruby") {
        script_interpreter_name(args, &["-I", "-r", "-C", "-E", "-x"], &["-e"])
    } else if exe.starts_with("perl") {
        script_interpreter_name(args, &["-I", "-M", "-m", "-x"], &["-e", "-E"])
    } else if exe.starts_with("php") && !exe.contains("fpm") {
        match args.iter().position(|a| a == "-f") {
            Some(i) => args.get(i + 1).map(|f| script_name(f)),
            None => script_interpreter_name(args, &["-S", "-t", "-c", "-d", "-z"], &["-r", "-S"]),
        }
    } else if exe == "dotnet" {
        script_interpreter_name(args, &[], &[]).filter(|_| args.first().is_some_and(|a| a.ends_with(".dll")))
    } else {
        None
    };
    derived.filter(|n| !n.is_empty()).unwrap_or_else(fallback)
}

/// Base name of a path, for logs.
pub fn exe_name(exe: &Path) -> &str {
    exe.file_name().and_then(|n| n.to_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::proc::OtelEnv;

    fn proc_(exe: &str, cmd: &[&str]) -> ProcessInfo {
        ProcessInfo {
            pid: 42,
            ppid: 1,
            exe: exe.into(),
            comm: exe.rsplit('/').next().unwrap_or_default().chars().take(15).collect(),
            cmdline: cmd.iter().map(|s| s.to_string()).collect(),
            start_time: 1,
            listen_ports: vec![],
            env: OtelEnv::default(),
            ..Default::default()
        }
    }

    fn name(exe: &str, cmd: &[&str]) -> String {
        derive_name(&proc_(exe, cmd))
    }

    #[test]
    fn kubernetes_names_come_after_process_selector_and_global_before_the_exe() {
        let k8s = K8sNames { name: "from-pod".into(), namespace: "podns".into() };
        let mut p = proc_("/usr/bin/python3", &["python3", "app.py"]);
        let plain = Criteria::default();
        let id = |p: &ProcessInfo, sel: &Criteria, global: Option<&str>, k: Option<&K8sNames>| {
            let i = identify_with_k8s(p, Some(sel), global, global, "h", k);
            (i.name, i.namespace)
        };
        // Kubernetes beats the executable name; without it, the executable names the service.
        assert_eq!(id(&p, &plain, None, Some(&k8s)), ("from-pod".into(), "podns".into()));
        assert_eq!(id(&p, &plain, None, None), ("app".into(), "".into()));
        // Blank Kubernetes names do not count.
        let blank = K8sNames::default();
        assert_eq!(id(&p, &plain, None, Some(&blank)), ("app".into(), "".into()));
        // The global name, then the selector's, then the process's own, beat Kubernetes.
        assert_eq!(id(&p, &plain, Some("global"), Some(&k8s)), ("global".into(), "global".into()));
        let sel = Criteria::default().name("sel").namespace("selns");
        assert_eq!(id(&p, &sel, Some("global"), Some(&k8s)), ("sel".into(), "selns".into()));
        p.env.service_name = Some("own".into());
        assert_eq!(id(&p, &sel, None, Some(&k8s)).0, "own");
    }

    #[test]
    fn precedence() {
        let mut p = proc_("/usr/bin/python3", &["python3", "app.py"]);
        let sel = Criteria::default().name("sel").namespace("selns");
        let id = identify(&p, Some(&sel), Some("global"), Some("globalns"), "host1");
        assert_eq!(id, ServiceId { name: "sel".into(), namespace: "selns".into(), instance_id: "host1:42".into() });

        p.env.service_name = Some("fromenv".into());
        p.env.service_namespace = Some("envns".into());
        let id = identify(&p, Some(&sel), Some("global"), Some("globalns"), "h");
        assert_eq!((id.name.as_str(), id.namespace.as_str()), ("fromenv", "envns"));

        let p = proc_("/usr/bin/python3", &["python3", "app.py"]);
        let id = identify(&p, Some(&Criteria::default()), Some("global"), Some("globalns"), "h");
        assert_eq!((id.name.as_str(), id.namespace.as_str()), ("global", "globalns"));
        let id = identify(&p, None, Some(""), None, "h");
        assert_eq!((id.name.as_str(), id.namespace.as_str()), ("app", ""));
    }

    #[test]
    fn env_resource_attributes_feed_name() {
        let mut p = proc_("/usr/bin/app", &["app"]);
        p.env = crate::discover::proc::parse_environ(
            b"OTEL_RESOURCE_ATTRIBUTES=service.name=billing,service.namespace=fin\0",
        );
        let id = identify(&p, Some(&Criteria::default().name("sel")), None, None, "h");
        assert_eq!((id.name.as_str(), id.namespace.as_str()), ("billing", "fin"));
    }

    #[test]
    fn python_names() {
        let py = "/usr/bin/python3.11";
        assert_eq!(name(py, &["python3", "app.py"]), "app");
        assert_eq!(name(py, &["python3", "-u", "/srv/orders/main.py", "--port", "1"]), "orders");
        assert_eq!(name(py, &["python", "-m", "mod"]), "mod");
        assert_eq!(name(py, &["python", "-mhttp.server"]), "http");
        assert_eq!(name(py, &["python", "-X", "dev", "-m", "pkg.worker"]), "worker");
        assert_eq!(name(py, &["python3", "-m", "uvicorn", "main:app", "--port", "8000"]), "main");
        assert_eq!(
            name(
                py,
                &["/venv/bin/python", "/venv/bin/gunicorn", "-w", "4", "-b", "0.0.0.0:8000", "shop.wsgi:application"]
            ),
            "shop"
        );
        assert_eq!(name(py, &["python3", "/usr/local/bin/uvicorn", "--host", "0.0.0.0", "api.main:app"]), "api");
        assert_eq!(name(py, &["python3", "/usr/local/bin/gunicorn"]), "gunicorn");
        assert_eq!(name(py, &["gunicorn: worker [billing.app:app]"]), "billing");
        assert_eq!(name(py, &["python3", "-c", "print(1)"]), "python3.11");
        assert_eq!(name(py, &["python3"]), "python3.11");
    }

    #[test]
    fn node_names() {
        let n = "/usr/bin/node";
        assert_eq!(name(n, &["node", "server.js"]), "server");
        assert_eq!(
            name(n, &["node", "--max-old-space-size=4096", "-r", "dotenv/config", "/srv/cart/index.js"]),
            "cart"
        );
        assert_eq!(name(n, &["node", "dist/index.js"]), "index");
        assert_eq!(name(n, &["node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "start"]), "npm");
        assert_eq!(name(n, &["node", "-e", "1"]), "node");
        assert_eq!(name("/usr/bin/deno", &["deno", "run", "-A", "api.ts"]), "api");
    }

    #[test]
    fn java_names() {
        let j = "/usr/lib/jvm/java-17/bin/java";
        assert_eq!(name(j, &["java", "-jar", "foo.jar"]), "foo");
        assert_eq!(name(j, &["java", "-Xmx1g", "-jar", "/app/shop-1.4.2-SNAPSHOT.jar"]), "shop");
        assert_eq!(name(j, &["java", "-cp", "x.jar:y", "com.example.App", "arg"]), "App");
        assert_eq!(name(j, &["java", "-Dfoo=bar", "-javaagent:/a.jar", "Main"]), "Main");
        assert_eq!(name(j, &["java", "-m", "shop.core/com.shop.Server"]), "Server");
        assert_eq!(name(j, &["java", "-version"]), "java");
    }

    #[test]
    fn other_interpreters() {
        assert_eq!(name("/usr/bin/ruby3.2", &["ruby", "-I", "lib", "app.rb"]), "app");
        assert_eq!(name("/usr/bin/ruby3.2", &["puma 6.4.0 (tcp://0.0.0.0:3000) [storefront]"]), "storefront");
        assert_eq!(name("/usr/bin/ruby3.2", &["ruby", "-e", "puts 1"]), "ruby3.2");
        assert_eq!(name("/usr/bin/perl", &["perl", "-Ilib", "/srv/cgi/report.pl"]), "report");
        assert_eq!(name("/usr/bin/php8.2", &["php", "artisan", "serve"]), "artisan");
        assert_eq!(name("/usr/bin/php8.2", &["php", "-S", "0.0.0.0:8000", "-t", "public"]), "php8.2");
        assert_eq!(name("/usr/bin/php8.2", &["php", "-f", "/srv/worker.php"]), "worker");
        assert_eq!(name("/usr/sbin/php-fpm8.2", &["php-fpm: pool www"]), "php-fpm8.2");
        assert_eq!(name("/usr/share/dotnet/dotnet", &["dotnet", "Orders.Api.dll"]), "Orders.Api");
        assert_eq!(name("/usr/share/dotnet/dotnet", &["dotnet", "run"]), "dotnet");
    }

    #[test]
    fn native_and_fallbacks() {
        assert_eq!(name("/usr/local/bin/checkout-svc", &["checkout-svc", "--port", "1"]), "checkout-svc");
        let mut p = proc_("", &["/opt/x/weird", "a"]);
        p.comm = String::new();
        assert_eq!(derive_name(&p), "weird");
        p.comm = "weirdcomm".into();
        assert_eq!(derive_name(&p), "weirdcomm");
    }

    #[test]
    fn helpers() {
        assert_eq!(strip_version("shop-1.4.2-SNAPSHOT"), "shop");
        assert_eq!(strip_version("my-app"), "my-app");
        assert_eq!(strip_version("-1"), "-1");
        assert_eq!(app_module("proj.wsgi:application"), "proj");
        assert_eq!(app_module("main:app"), "main");
        assert_eq!(app_module("services.billing.api:app"), "api");
        assert_eq!(stem(".hidden"), ".hidden");
        assert_eq!(instance_id("node-1", 7), "node-1:7");
        assert_eq!(exe_name(Path::new("/a/b")), "b");
    }
}
