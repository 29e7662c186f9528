"""Quadlet units for the six Hive-Mind services, the network and their volumes."""

from __future__ import annotations

from hivemind_cli.render.model import DeployLayout
from hivemind_cli.render.unit_file import Unit, header
from hivemind_common.hosts import GPU_SERVICES, SERVICES, Registry

NETWORK = "hivemind"
DATA_DIR = "/data"
MODELS_DIR = "/models"
ENV_FILE = "/etc/hivemind/hivemind.env"
# Podman secrets the operator creates once per node (docs/deploy.md); units only name them.
SECRET_INTERNAL_TOKEN = "hivemind-internal-token"
SECRET_REDIS_URL = "hivemind-redis-url"
# Services that read model files (the read-only models volume) besides their data volume.
READS_MODELS = frozenset({"embedding", "inference", "trainer", "exporter"})
DESCRIPTIONS = {
    "gateway": "OpenAI-compatible gateway and memory API",
    "mcp": "MCP bridge for coding assistants",
    "embedding": "embedding service",
    "inference": "llama.cpp inference",
    "trainer": "continuous-learning trainer",
    "exporter": "GGUF exporter",
}


def container_name(service: str) -> str:
    return f"hivemind-{service}"


def peer_url(registry: Registry, profile: str, node: str, service: str) -> str:
    """How a container on ``node`` reaches ``service``: by name on this node, else by address."""
    where = registry.placement(service, profile)
    if where.node == node:
        return f"http://{container_name(service)}:{where.port}"
    return registry.url(service, profile)


# The services reach each other by container name, so the network's DNS must work on the node.
NETWORK_DNS_NOTE = [
    "",
    "Containers find each other by name on this network, so the node's podman must resolve",
    "names: the netavark backend (podman 4+ default) needs aardvark-dns; the CNI backend",
    "(Debian 12's podman 4.3) needs the dnsname plugin, Debian package",
    "golang-github-containernetworking-plugin-dnsname. `podman info --format",
    "'{{.Host.NetworkBackend}}'` names the backend; scripts/probe-container-dns.sh checks it.",
    "A network created before its DNS was installed resolves nothing: remove and recreate it.",
]


def network_unit(profile: str, node: str) -> Unit:
    unit = Unit(f"{NETWORK}.network", header(profile, node) + NETWORK_DNS_NOTE)
    unit.add("Unit", "Description", "Hive-Mind container network")
    unit.add("Network", "NetworkName", NETWORK)
    unit.add("Network", "DisableDNS", "false")
    unit.add("Network", "Label", f"app=hivemind profile={profile}")
    return unit


def volume_unit(profile: str, node: str, name: str, what: str) -> Unit:
    unit = Unit(f"{name}.volume", header(profile, node))
    unit.add("Unit", "Description", f"Hive-Mind volume: {what}")
    unit.add("Volume", "VolumeName", name)
    unit.add("Volume", "Label", f"app=hivemind profile={profile}")
    return unit


def healthcheck(unit: Unit, port: int) -> None:
    """The same probe the images carry: GET /readyz on the service's port."""
    unit.add("Container", "HealthCmd", f"/usr/local/bin/hivemind-healthcheck {port}")
    unit.add("Container", "HealthInterval", "30s")
    unit.add("Container", "HealthTimeout", "5s")
    unit.add("Container", "HealthRetries", "3")
    unit.add("Container", "HealthStartPeriod", "120s")


def service_unit(
    registry: Registry,
    layout: DeployLayout,
    node: str,
    service: str,
    *,
    after: list[str],
) -> Unit:
    """``hivemind-<service>.container``: image, ports on the node's address, env, secrets."""
    profile = layout.profile
    where = registry.placement(service, profile)
    address = registry.profile(profile).nodes[node].address
    unit = Unit(f"{container_name(service)}.container", header(profile, node))
    unit.add("Unit", "Description", f"Hive-Mind {DESCRIPTIONS[service]} ({profile} on {node})")
    unit.add("Unit", "Wants", "network-online.target")
    unit.add("Unit", "After", " ".join(["network-online.target", *after]))

    c = "Container"
    unit.add(c, "ContainerName", container_name(service))
    unit.add(c, "Image", layout.image(service))
    unit.add(c, "Network", f"{NETWORK}.network")
    unit.add(c, "PublishPort", f"{address}:{where.port}:{where.port}")
    unit.add(c, "Volume", f"hivemind-data.volume:{DATA_DIR}:Z")
    if service in READS_MODELS:
        unit.add(c, "Volume", f"hivemind-models.volume:{MODELS_DIR}:ro,Z")
    env = {
        "HIVEMIND_PROFILE": profile,
        "HIVEMIND_NODE": node,
        "HIVEMIND_HOST": "0.0.0.0",
        "HIVEMIND_PORT": str(where.port),
        "HIVEMIND_DATA_DIR": DATA_DIR,
        "HIVEMIND_LOG_JSON": "true",
    }
    for peer in SERVICES:
        if peer != service:
            env[f"HIVEMIND_{peer.upper()}_URL"] = peer_url(registry, profile, node, peer)
    env.update(registry.gpu_env(service, profile))  # a GPU node's offload settings
    for key, value in env.items():
        unit.add(c, "Environment", f"{key}={value}")
    gpu = registry.profile(profile).nodes[node].gpu
    if gpu is not None and service in GPU_SERVICES:
        # CUDA through the NVIDIA container toolkit's CDI spec; ROCm through its device nodes
        devices = ["nvidia.com/gpu=all"] if gpu.runtime == "cuda" else ["/dev/kfd", "/dev/dri"]
        for device in devices:
            unit.add(c, "AddDevice", device)
        if gpu.runtime == "rocm":
            unit.add(c, "GroupAdd", "keep-groups")
    # Operator settings (model paths, limits) without secrets; secrets come from podman secrets.
    unit.add(c, "EnvironmentFile", ENV_FILE)
    unit.add(c, "Secret", f"{SECRET_INTERNAL_TOKEN},type=env,target=HIVEMIND_INTERNAL_TOKEN")
    unit.add(c, "Secret", f"{SECRET_REDIS_URL},type=env,target=HIVEMIND_REDIS_URL")
    unit.add(c, "NoNewPrivileges", "true")
    unit.add(c, "Label", f"app=hivemind service={service}")
    healthcheck(unit, where.port)

    unit.add("Service", "Restart", "always")
    unit.add("Service", "RestartSec", "5")
    unit.add("Service", "TimeoutStartSec", "600")
    unit.add("Service", "TimeoutStopSec", "30")
    unit.add("Install", "WantedBy", "multi-user.target default.target")
    return unit


def service_set(
    registry: Registry, layout: DeployLayout, node: str, after: list[str]
) -> list[Unit]:
    """The network, the volumes and one container per service placed on ``node``."""
    profile = layout.profile
    units = [
        network_unit(profile, node),
        volume_unit(profile, node, "hivemind-data", "data dir (datasets, artifacts, models)"),
    ]
    placed = registry.services_on(node, profile)
    if READS_MODELS.intersection(placed):
        units.append(volume_unit(profile, node, "hivemind-models", "model files (GGUF, HF dirs)"))
    units += [service_unit(registry, layout, node, s, after=after) for s in placed]
    return units
