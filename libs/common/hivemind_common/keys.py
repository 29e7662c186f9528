"""Every Redis key Hive-Mind uses, its TTL and every stream length, in one place.

Keys that belong to one tenant carry the hash tag ``{t:<tenant>}`` so that a tenant's multi-key
work (a transaction, a pipeline, a WAIT after it) stays in one cluster slot. Global families
carry their own tag (``{auth}``, ``{learn}``, ``{models}``); a key's request counter has its own
(``{rate:<key id>}``) so busy keys spread over the cluster. No other module formats a key.

No two keys can collide: every family has a prefix of its own (no family's prefix begins
another's), a caller's free-form id (a fact key, a session or memory id, which may hold ``:``)
only ever comes last, and every other part is a name that cannot hold ``:`` or braces (checked
here). So session ``x:memories`` is ``...:session:x:memories`` while session ``x``'s memory set
is ``...:sessmem:x``.
"""

from __future__ import annotations

import re

from hivemind_common import ids
from hivemind_common.errors import Invalid

PREFIX = "hm"

# --- TTLs (seconds) ---------------------------------------------------------------------------
SESSION_TTL_S = 30 * 24 * 3600  # refreshed on every write to the session
TOOL_CACHE_TTL_S = 24 * 3600
RESPONSE_CACHE_TTL_S = 6 * 3600
JOB_TTL_S = 30 * 24 * 3600
LEADER_LOCK_TTL_MS = 30_000
WRITE_CLAIM_MS = 30_000  # a crashed writer's claim (keys.write_claim) frees itself this soon
DEPLOY_LOCK_MS = 60_000  # renewed while held: a dead deployer frees it within a minute
TOOL_CACHE_TTL_MAX_S = 30 * 24 * 3600  # the longest TTL a caller may give a tool-cache entry
LEARNING_BYTES_TTL_S = 2 * 24 * 3600  # a day's learning counters outlive their day
CONSOLE_SESSION_TTL_S = 8 * 3600  # a web console sign-in (not refreshed: sign in again)

# --- bounded collections ----------------------------------------------------------------------
CHANGES_MAXLEN = 100_000  # change stream per tenant (approximate trim)
RAG_LOG_MAXLEN = 10_000  # retrieval log per tenant
RATE_WINDOW_S = 60  # request rates are counted per key and per tenant in windows this long
INFERENCE_LEASE_MS = 30_000  # renewed while its request runs: a killed gateway's frees this soon
LEARNING_STREAM_MAXLEN = 200_000
JOBS_STREAM_MAXLEN = 10_000
AUDIT_MAXLEN = 100_000  # audit trail of admin and operator actions (approximate trim)
JOBS_INDEX_MAX = 1_000  # job records listed in the jobs index (older ones expire by JOB_TTL_S)
DEAD_LETTERS_MAX = 200  # jobs given up on, newest first
# fields of a samples-by-source counter (source x outcome); a source label beyond it counts as
# "other", so a client cannot grow the suite-wide hash without bound by inventing labels
LEARNING_SOURCES_MAX = 192
KEY_REVOCATIONS_MAXLEN = 1_000  # revoked key ids, tailed by every gateway's key cache

# --- consumer groups --------------------------------------------------------------------------
TRAINER_GROUP = "trainer"
EXPORTER_GROUP = "exporter"

valid_tenant = ids.valid_tenant
_NOT_IN_PART = re.compile(r"[:{}\s]")


def _t(tenant: str) -> str:
    if not valid_tenant(tenant):
        raise ValueError(f"invalid tenant name: {tenant!r}")
    return f"{PREFIX}:{{t:{tenant}}}"


def _part(value: str, what: str) -> str:
    """A part of a key that is not its last: no ':', braces or spaces (else ``Invalid``)."""
    if not value or _NOT_IN_PART.search(value):
        raise Invalid(f"invalid {what}: {value!r}", param=what)
    return value


# --- auth (global) ----------------------------------------------------------------------------
def api_key(key_id: str) -> str:
    """Hash: tenant, role, sha256 of the secret, created_at, revoked."""
    return f"{PREFIX}:{{auth}}:key:{key_id}"


def api_keys_index() -> str:
    """Set of every key id."""
    return f"{PREFIX}:{{auth}}:keys"


def api_key_revocations() -> str:
    """Stream: one ``{key_id}`` entry per revoked key; each gateway forgets that key at once
    (``hivemind_common.key_cache``). Same slot as the keys, so a revoke writes both in one
    MULTI/EXEC."""
    return f"{PREFIX}:{{auth}}:revocations"


def tenants_index() -> str:
    """Set of every tenant that has ever been given a key."""
    return f"{PREFIX}:{{auth}}:tenants"


def tenant_api_keys(tenant: str) -> str:
    """Set of the live (not revoked) key ids of one tenant: what its key limit counts."""
    if not valid_tenant(tenant):
        raise ValueError(f"invalid tenant name: {tenant!r}")
    return f"{PREFIX}:{{auth}}:tenantkeys:{tenant}"


def tenant_api_keys_counted() -> str:
    """Set of the tenants whose ``tenant_api_keys`` set holds their keys made before it
    existed too (filled once per tenant from every key's record)."""
    return f"{PREFIX}:{{auth}}:tenantkeys-counted"


def console_session(session_id: str) -> str:
    """Hash: a web console sign-in (key id, tenant, role, CSRF token); the key itself is never
    kept. ``session_id`` is the opaque random id in the browser's HttpOnly cookie."""
    return f"{PREFIX}:{{auth}}:console:{_part(session_id, 'console session')}"


# --- audit (global) ---------------------------------------------------------------------------
def audit_stream() -> str:
    """Stream: one entry per state-changing admin or operator action (``hivemind_common.audit``)."""
    return f"{PREFIX}:{{audit}}:log"


# --- facts --------------------------------------------------------------------------------------
def fact(tenant: str, key: str) -> str:
    return f"{_t(tenant)}:fact:{key}"


def facts_index(tenant: str) -> str:
    """Sorted set of fact keys (lexicographic paging)."""
    return f"{_t(tenant)}:facts"


# --- sessions and memories ----------------------------------------------------------------------
def session(tenant: str, session_id: str) -> str:
    return f"{_t(tenant)}:session:{session_id}"


def sessions_recent(tenant: str) -> str:
    """Sorted set: session id -> last write (unix seconds); ids whose session expired
    (no write for SESSION_TTL_S) are dropped on every write, so it holds the live sessions."""
    return f"{_t(tenant)}:sessions"


def memory(tenant: str, memory_id: str) -> str:
    return f"{_t(tenant)}:memory:{memory_id}"


def memories_index(tenant: str) -> str:
    """Sorted set: memory id -> created_at."""
    return f"{_t(tenant)}:memories"


def session_memories(tenant: str, session_id: str) -> str:
    """Sorted set: the ids of one session's memories (a family of its own, see above)."""
    return f"{_t(tenant)}:sessmem:{session_id}"


# --- the reference library: documents and their chunks ----------------------------------------
def doc(tenant: str, doc_id: str) -> str:
    """Hash: one document (collection, source, content hash, type, metadata, its chunk ids)."""
    return f"{_t(tenant)}:doc:{doc_id}"


def docs_index(tenant: str) -> str:
    """Sorted set of every document id of the tenant (the docs quota counts it)."""
    return f"{_t(tenant)}:docs"


def doc_collection(tenant: str, collection: str) -> str:
    """Sorted set: the sources of one collection's documents (lexicographic paging)."""
    return f"{_t(tenant)}:doccol:{collection}"


def doc_chunk(tenant: str, chunk_id: str) -> str:
    """Hash: one chunk of a document (text, source, line range, heading)."""
    return f"{_t(tenant)}:chunk:{chunk_id}"


def doc_chunks_index(tenant: str) -> str:
    """Sorted set of every chunk id of the tenant (the search index loads from it)."""
    return f"{_t(tenant)}:chunks"


# Before the sessmem family, a session's memory set was ``...:session:<id>:memories``, a key a
# session named ``<id>:memories`` shared; the gateway moves such sets once (see migrations).
LEGACY_SESSION_MEMORIES_MATCH = f"{PREFIX}:{{t:*}}:session:*:memories"


def parse_legacy_session_memories(key: str) -> tuple[str, str] | None:
    """(tenant, session id) of a key in the legacy memory-set form, or None."""
    head, sep, rest = key.partition(":{t:")
    tenant, sep2, tail = rest.partition("}:session:")
    if head != PREFIX or not sep or not sep2 or not tail.endswith(":memories"):
        return None
    session_id = tail.removesuffix(":memories")
    return (tenant, session_id) if valid_tenant(tenant) and session_id else None


def migration_done(name: str) -> str:
    """String set once a one-time data migration ``name`` has run to its end."""
    return f"{PREFIX}:{{migrations}}:{_part(name, 'migration')}"


MIGRATIONS_DONE_MATCH = f"{PREFIX}:{{migrations}}:*"


# --- vectors and change stream --------------------------------------------------------------------
def vector(tenant: str, model_id: str, kind: str, item_id: str) -> str:
    """Raw float32 vector of one fact or memory, made by ``model_id``."""
    return f"{_t(tenant)}:vec:{_part(model_id, 'model_id')}:{_part(kind, 'kind')}:{item_id}"


def vector_models(tenant: str) -> str:
    """Set: every embedding model that has stored a vector of this tenant's items, so that a
    delete removes an item's vectors in every model's space, not only the serving one's."""
    return f"{_t(tenant)}:vecmodels"


VECTOR_KEYS_MATCH = f"{PREFIX}:{{t:*}}:vec:*"


def parse_vector(key: str) -> tuple[str, str] | None:
    """``(tenant, model_id)`` of a ``vector`` key, else None."""
    head, sep, rest = key.partition(":{t:")
    tenant, sep2, tail = rest.partition("}:vec:")
    model_id = tail.split(":", 1)[0]
    if head != PREFIX or not sep or not sep2 or not model_id or tail.count(":") < 2:
        return None
    return (tenant, model_id) if valid_tenant(tenant) else None


def vector_claim(tenant: str, kind: str, item_id: str) -> str:
    """String with a TTL: one gateway process is embedding this item (the others wait for
    its vector on the change stream)."""
    return f"{_t(tenant)}:vclaim:{_part(kind, 'kind')}:{item_id}"


def write_claim(tenant: str, kind: str, item_id: str) -> str:
    """String with a TTL: a write of this item is under way. For a memory it holds the digest
    of the body being written under a client's id (another body under that id is refused); for
    a document, the token of the request that holds the document's write lock."""
    return f"{_t(tenant)}:wclaim:{_part(kind, 'kind')}:{item_id}"


def changes(tenant: str) -> str:
    """Stream of writes to a tenant's searchable items; gateways tail it to stay current."""
    return f"{_t(tenant)}:changes"


# --- caches ---------------------------------------------------------------------------------------
def tool_cache(tenant: str, tool: str, input_hash: str) -> str:
    return f"{_t(tenant)}:toolcache:{_part(tool, 'tool')}:{input_hash}"


def response_cache(tenant: str, digest: str) -> str:
    return f"{_t(tenant)}:respcache:{digest}"


# --- retrieval log ------------------------------------------------------------------------------
def rag_log(tenant: str) -> str:
    return f"{_t(tenant)}:raglog"


def rag_counters(tenant: str) -> str:
    return f"{_t(tenant)}:ragstats"


def tenant_settings(tenant: str) -> str:
    """Hash of per-tenant switches and limits (``capture``, ``share_training``, quotas, ``rpm``)."""
    return f"{_t(tenant)}:settings"


def request_window(tenant: str, window: int) -> str:
    """Counter: requests of all the tenant's keys in one rate window."""
    return f"{_t(tenant)}:rate:{window}"


def inference_leases(tenant: str) -> str:
    """Sorted set: the tenant's inference requests running on any gateway (lease id -> when
    the lease lapses, unix ms, unless its gateway renews it)."""
    return f"{_t(tenant)}:inference"


def learning_bytes(tenant: str, day: int) -> str:
    """Counter: bytes of learning samples (posted and captured) the tenant queued on one day."""
    return f"{_t(tenant)}:learnbytes:{day}"


def learning_samples(tenant: str, day: int) -> str:
    """Counter: learning samples (posted and captured) the tenant queued on one day."""
    return f"{_t(tenant)}:learnsamples:{day}"


def key_request_window(key_id: str, window: int) -> str:
    """Counter: requests of one API key in one rate window (its own slot: keys spread out)."""
    return f"{PREFIX}:{{rate:{key_id}}}:{window}"


def tool_cache_sizes(tenant: str) -> str:
    """Hash: ``<tool>:<input hash>`` -> bytes of that tool-cache entry (the cache quota)."""
    return f"{_t(tenant)}:toolcache-sizes"


def tool_cache_expiry(tenant: str) -> str:
    """Sorted set: ``<tool>:<input hash>`` -> when that entry expires (unix ms)."""
    return f"{_t(tenant)}:toolcache-expiry"


def tool_cache_bytes(tenant: str) -> str:
    """String: bytes held by the tenant's live tool-cache entries."""
    return f"{_t(tenant)}:toolcache-bytes"


def quota_reservations(tenant: str, kind: str) -> str:
    """Sorted set: places held for ``kind`` items by writes in flight, scored by when they lapse."""
    return f"{_t(tenant)}:reserved:{kind}"


def tenant_learning_counts(tenant: str) -> str:
    """Hash: what the trainer did with this tenant's samples (accepted, rejected, not_shared)."""
    return f"{_t(tenant)}:learncounts"


# --- learning (global) --------------------------------------------------------------------------
def learning_stream() -> str:
    """Stream of captured chats and submitted samples; the trainer reads it in a group."""
    return f"{PREFIX}:{{learn}}:samples"


def learning_state() -> str:
    """Hash: counters and timestamps of the orchestrator."""
    return f"{PREFIX}:{{learn}}:state"


def jobs_stream() -> str:
    return f"{PREFIX}:{{learn}}:jobs"


def job(job_id: str) -> str:
    return f"{PREFIX}:{{learn}}:job:{job_id}"


def jobs_index() -> str:
    return f"{PREFIX}:{{learn}}:jobindex"


def leader_lock(role: str = "trainer") -> str:
    return f"{PREFIX}:{{learn}}:leader:{_part(role, 'role')}"


def export_stream() -> str:
    return f"{PREFIX}:{{learn}}:exports"


def learning_seen() -> str:
    """Set of content hashes of accepted samples (exact-duplicate check)."""
    return f"{PREFIX}:{{learn}}:seen"


def dead_letters() -> str:
    """List (newest first, capped): JSON of train / export jobs given up on, with the reason."""
    return f"{PREFIX}:{{learn}}:deadletters"


def learning_rejections() -> str:
    """Hash: rejection reason -> count."""
    return f"{PREFIX}:{{learn}}:rejections"


def learning_sources() -> str:
    """Hash: ``<source>:<outcome>`` -> count of samples (outcome accepted, rejected or
    not_shared; a source label never holds a colon)."""
    return f"{PREFIX}:{{learn}}:sources"


# --- model registry (global) --------------------------------------------------------------------
def model_versions(name: str) -> str:
    """Hash: version -> JSON record."""
    return f"{PREFIX}:{{models}}:{_part(name, 'model')}:versions"


def model_serving(name: str) -> str:
    """Hash: serving, previous."""
    return f"{PREFIX}:{{models}}:{_part(name, 'model')}:serving"


def served_model_version(name: str) -> str:
    """String: the version the inference service is answering with right now (set on swap)."""
    return f"{PREFIX}:{{models}}:{_part(name, 'model')}:served"


def models_index() -> str:
    return f"{PREFIX}:{{models}}:names"


def model_deploy_lock(name: str) -> str:
    """String (SET NX PX): held while one deploy / promote / rollback of ``name`` runs."""
    return f"{PREFIX}:{{models}}:{_part(name, 'model')}:deploylock"
