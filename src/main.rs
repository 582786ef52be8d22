//! Load the configuration, build the proxy and metrics services, run them in one Pingora server.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use log::{info, warn};
use pingora_core::server::Server;

use arc_swap::ArcSwap;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use prometheus_tunnel::access::AccessControl;
use prometheus_tunnel::admin::AgentListing;
use prometheus_tunnel::agent::directory::AgentDirectory;
use prometheus_tunnel::agent::peers::{PeerDirectory, PeerWatcher};
use prometheus_tunnel::agent::port::{AgentPort, ReplicaCount};
use prometheus_tunnel::agent::relay::AgentScrapes;
use prometheus_tunnel::config::AgentPortConfig;
use prometheus_tunnel::config::{cli::Cli, LoadedConfig, PollConfig, ProcessEnv, TunnelConfig};
use prometheus_tunnel::listener::capacity::Capacity;
use prometheus_tunnel::listener::ProxyPort;
use prometheus_tunnel::material::tls::ListenerTls;
use prometheus_tunnel::material::{self, Material};
use prometheus_tunnel::reload::{Reloader, WatchedConf};
use prometheus_tunnel::reverse::poll_port::{PollPort, PortRules};
use prometheus_tunnel::reverse::registry::{PollRules, Registry};
use prometheus_tunnel::reverse::scrape::ReverseScrapes;
use prometheus_tunnel::reverse::Sweeper;
use prometheus_tunnel::service::AgentDoor;
use prometheus_tunnel::targets::{SharedTargets, TargetTable};
use prometheus_tunnel::upstream::idle;
use prometheus_tunnel::{agent_role, build_info, logging, metrics, service};

/// mimalloc instead of glibc malloc: Pingora allocates per-request buffers that glibc serves
/// with page faults; benches/README.md has the measured difference.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Once a second on each worker thread: mimalloc hands the pages its heap no longer uses back
/// to the operating system. It otherwise does that only when the thread next allocates, so the
/// memory of a thousand connections that just closed stayed with an idle thread
/// (`tests/capacity.rs`).
fn return_free_memory() {
    // SAFETY: `mi_collect` only walks the calling thread's mimalloc heap (the allocator of this
    // process) and the shared arenas under their own locks; it takes no pointer.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

/// Exit code for a configuration that was refused.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Stamped before it is read, so that the reload watch sees an edit made meanwhile.
    let conf = cli
        .pingora
        .conf
        .as_deref()
        .map(|path| WatchedConf::before_reading(PathBuf::from(path)));
    let (LoadedConfig { tunnel, server }, material) = match material::load(&cli, &ProcessEnv) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for e in errors {
                eprintln!("prometheus-tunnel: configuration error: {e}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    logging::init(tunnel.debug);

    if cli.pingora.test {
        println!("prometheus-tunnel: configuration OK");
        return ExitCode::SUCCESS;
    }
    // When upgrading, the old process still holds the ports and hands them over.
    if !cli.pingora.upgrade {
        let mut addrs: Vec<SocketAddr> = tunnel.traffic_ports().into_iter().map(|p| p.1).collect();
        addrs.push(tunnel.listen.metrics_addr());
        // An agent listens on nothing.
        for addr in addrs.into_iter().filter(|_| tunnel.agent_role.is_none()) {
            if let Err(e) = TcpListener::bind(addr) {
                eprintln!("prometheus-tunnel: cannot listen on {addr}: {e}: expected a free port and an address of this machine");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }

    metrics::init(tunnel.labelled_metrics());
    prometheus_tunnel::pacemaker::on_every_tick(return_free_memory);
    let max_connections = connection_limit(&tunnel);
    idle::limit_total(Capacity::idle_exporter_connections(max_connections));
    let Material {
        exporters,
        port,
        poll_tls,
        agent_tls,
        tunnel: tunnel_certs,
    } = material;
    let table = match TargetTable::build(&tunnel, exporters) {
        Ok(table) => table,
        Err(e) => {
            eprintln!("prometheus-tunnel: cannot build the targets: {e}");
            return ExitCode::FAILURE;
        }
    };
    let targets: SharedTargets = Arc::new(ArcSwap::from_pointee(table));
    // The conf file was read already; Pingora must not read it again.
    let mut opt = cli.pingora;
    opt.conf = None;
    let mut server = Server::new_with_opt_and_conf(opt, server);
    server.bootstrap();
    let server_conf = Arc::clone(&server.configuration);
    if let (Some(role), Some(certs)) = (&tunnel.agent_role, tunnel_certs) {
        let started = agent_role::start(&mut server, &tunnel, role, certs, targets, conf);
        if let Err((code, e)) = started {
            eprintln!("prometheus-tunnel: {e}");
            return ExitCode::from(code);
        }
        drop(tunnel);
        server.run_forever()
    }

    let mut ports = Vec::new();
    let reverse = match &tunnel.poll {
        Some(poll) => {
            let listing = AccessControl::new(&tunnel.access, port.client_auth.clone());
            let built = reverse_mode(
                &tunnel,
                poll,
                &targets,
                poll_tls.as_ref(),
                listing,
                max_connections,
            );
            match built {
                Ok((scrapes, poll_port, sweeper)) => {
                    ports.push(server.add_service(poll_port));
                    server.add_service(background_service("poll sweeper", sweeper));
                    Some(scrapes)
                }
                Err(e) => {
                    eprintln!("prometheus-tunnel: cannot build the poll port: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    let registry = reverse.as_ref().map(|r| Arc::clone(&r.registry));
    let (agents, agent_listing) = match (&tunnel.agent_port, agent_tls) {
        (Some(agent), Some(tls)) => {
            let (scrapes, door, listing) = agent_mode(&mut server, &tunnel, agent, tls, &targets);
            (Some((scrapes, door)), Some(listing))
        }
        _ => (None, None),
    };
    let proxy = match service::proxy_service(
        &server_conf,
        &tunnel,
        port,
        &targets,
        max_connections,
        reverse,
        agents,
    ) {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("prometheus-tunnel: cannot build the proxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reloader = Reloader::new(std::env::args_os().collect(), conf, Arc::clone(&targets));
    let admin = service::admin_service(&tunnel, &targets, registry, agent_listing, reloader.log());
    ports.push(server.add_service(proxy));
    let admin_handle = server.add_service(admin);
    // Started after the ports' services; /readyz then probes that each port listens.
    for port in &ports {
        admin_handle.add_dependency(port);
    }
    server.add_service(background_service("reload", reloader));

    log_start(&tunnel);
    // Everything is built: a fleet's configuration, and the pages this thread parsed it in,
    // go back now, not at the first scrape's tick. SAFETY: as in `return_free_memory`;
    // forced, since this thread will not come back to honour mimalloc's purge delay.
    drop(tunnel);
    unsafe { libmimalloc_sys::mi_collect(true) }
    server.run_forever()
}

/// Reverse mode's pieces: the scrapes of registered names (for the proxy port), the poll port's
/// service and the registry's sweeper, sharing one registry.
fn reverse_mode(
    tunnel: &TunnelConfig,
    poll: &PollConfig,
    targets: &SharedTargets,
    tls: Option<&ListenerTls>,
    listing: AccessControl,
    max_connections: usize,
) -> pingora_error::Result<(ReverseScrapes, Service<ProxyPort<PollPort>>, Sweeper)> {
    let metrics = metrics::poll_metrics();
    let rules = PollRules {
        max_clients: poll.max_clients,
        max_polls_per_name: poll.max_polls_per_name,
    };
    let registry = Arc::new(Registry::new(rules, metrics, Arc::clone(targets)));
    let handler = PollPort::new(
        Arc::clone(&registry),
        PortRules {
            allowed: poll.allowed.clone(),
            bind_names: poll.bind_names,
            keepalive: poll.keepalive,
            max_push_size: poll.max_push_size,
        },
        listing,
        metrics,
    );
    // Each client holds a poll and, now and then, a push: room for every name's, within what
    // the process allows the proxy port.
    let connections = (poll.max_clients * (poll.max_polls_per_name + 1) + 64).min(max_connections);
    let service = service::poll_service(
        handler,
        SocketAddr::new(tunnel.listen.address, poll.port.get()),
        tunnel.listen.limits,
        connections,
        tls,
        &metrics.port,
    )?;
    let scrapes = ReverseScrapes {
        registry: Arc::clone(&registry),
        timeout: poll.scrape_timeout,
    };
    Ok((scrapes, service, Sweeper::new(registry)))
}

/// Agent mode's pieces, tunnel side: the agent port (for the proxy port's service), the agents'
/// directory the proxy port and `/targets` read, the other replicas' watcher (on `server`).
fn agent_mode(
    server: &mut Server,
    tunnel: &TunnelConfig,
    agent: &AgentPortConfig,
    tls: ListenerTls,
    targets: &SharedTargets,
) -> (AgentScrapes, AgentDoor, AgentListing) {
    let metrics = metrics::agent_metrics();
    let directory = Arc::new(AgentDirectory::new(
        agent.max_agents,
        agent.max_streams,
        Arc::clone(targets),
        metrics,
    ));
    let replicas = ReplicaCount::one();
    let peers = agent.peers.as_ref().map(|peers| {
        Arc::new(PeerDirectory::new(
            peers.clone(),
            &agent.replica_id,
            Arc::clone(&replicas),
        ))
    });
    if let Some(peers) = &peers {
        let watcher = PeerWatcher::new(Arc::clone(peers), Arc::clone(&directory));
        server.add_service(background_service("peer watcher", watcher));
    }
    let handler = AgentPort::new(
        Arc::clone(&directory),
        &agent.replica_id,
        replicas,
        agent.max_streams,
        metrics,
    );
    let door = AgentDoor {
        addr: SocketAddr::new(tunnel.listen.address, agent.port.get()),
        tls,
        handler,
    };
    let forward_to = if tunnel.listen.tls.is_some() && peers.is_some() {
        warn!("PEERS with TLS on the proxy port: scrapes are not forwarded between replicas; each is answered by the replica it reaches, which every agent dials");
        None
    } else {
        peers.clone()
    };
    let scrapes = AgentScrapes {
        directory: Arc::clone(&directory),
        peers: forward_to,
        timeout: agent.scrape_timeout,
        max_body: agent.max_body_size,
    };
    let listing = AgentListing {
        directory,
        peers,
        replica_id: agent.replica_id.clone(),
    };
    (scrapes, door, listing)
}

/// `MAX_CONNECTIONS`, or what this process's open-file limit and memory allow when it is
/// unset; either way said in one line, with a warning when a set value exceeds the file limit.
fn connection_limit(tunnel: &TunnelConfig) -> usize {
    let capacity = Capacity::of_this_process();
    let memory = capacity
        .memory
        .map_or("unknown".to_string(), |m| format!("{} MiB", m >> 20));
    match tunnel.listen.limits.max_connections {
        Some(set) => {
            if set > capacity.connections_by_files() {
                warn!(
                    "MAX_CONNECTIONS={set} exceeds what the open-file limit ({}) allows ({}: a \
                     connection, its exporter connection and an idle one each, and {} kept for \
                     the rest); past that, accepts and exporter connections fail. Raise the \
                     limit (ulimit -n) or lower MAX_CONNECTIONS.",
                    capacity.open_files,
                    capacity.connections_by_files(),
                    prometheus_tunnel::listener::capacity::RESERVED_FDS,
                );
            }
            set
        }
        None => {
            let derived = capacity.default_max_connections();
            info!(
                "MAX_CONNECTIONS not set: {derived} client connections (open-file limit {}, memory {memory})",
                capacity.open_files
            );
            derived
        }
    }
}

/// One line on what listens where and where scrapes go; a warning for unverified TLS.
fn log_start(tunnel: &TunnelConfig) {
    let forwarding = match tunnel.targets.as_slice() {
        [only] if !tunnel.multi_target => format!(
            "{}://{}{} (timeout {:?})",
            only.exporter.scheme.as_str(),
            only.exporter.authority(),
            only.exporter
                .proxy
                .as_ref()
                .map_or(String::new(), |proxy| format!(" via {proxy}")),
            only.exporter.timeout
        ),
        [] => "no configured target".to_string(),
        targets => format!(
            "{} targets by ?{}=NAME (default: {})",
            targets.len(),
            tunnel.target_param,
            tunnel.default_target.as_deref().unwrap_or("none")
        ),
    };
    let forwarding = match &tunnel.poll {
        Some(poll) => format!(
            "{forwarding}, and to the clients that poll {}:{} (/poll, /push, /clients{})",
            tunnel.listen.address,
            poll.port,
            if poll.tls.is_some() { ", TLS" } else { "" }
        ),
        None => forwarding,
    };
    let forwarding = match &tunnel.agent_port {
        Some(agent) => format!(
            "{forwarding}, and to the agents that dial {}:{} (replica {}{})",
            tunnel.listen.address,
            agent.port,
            agent.replica_id,
            agent.peers.as_ref().map_or(String::new(), |p| format!(
                ", {} PEERS entries",
                p.entries.len()
            ))
        ),
        None => forwarding,
    };
    info!(
        "prometheus-tunnel {} ({}, built {}): forwarding {} to {forwarding}; metrics, health, version and targets on {}",
        build_info::VERSION,
        build_info::GIT_COMMIT,
        build_info::BUILD_DATE,
        tunnel.listen.proxy_addr(),
        tunnel.listen.metrics_addr(),
    );
    for target in &tunnel.targets {
        let exporter = &target.exporter;
        if exporter.tls.as_ref().is_some_and(|tls| !tls.verify) {
            warn!(
                "TLS_INSECURE_SKIP_VERIFY is on for target {}: the exporter's certificate is NOT \
                 verified, so anyone on the path to {} can impersonate it. Give its CA in \
                 TLS_CA_FILE instead.",
                target.name,
                exporter.authority()
            );
        }
    }
}
