"""Custom SQL read through PostgreSQL's own grammar (pglast): what a check may send, and what not.

Three locks, each for what the others cannot see:

1. `read_only_sql` (when the profile loads, so the message names the line): exactly one
   SELECT / WITH / VALUES / TABLE / SHOW / EXPLAIN statement, no data-modifying statement
   inside a WITH, no SELECT INTO, no FOR UPDATE/SHARE, no EXPLAIN ANALYZE, and no call to a
   function known to act on the server (`pg_terminate_backend`, advisory locks, statistics
   resets, large objects, dblink, sequences, `set_config`...). Function names are read as
   the server reads them: quoted (`"pg_terminate_backend"`), Unicode-escaped
   (`U&"\\0070g_..."`) and schema-qualified names all resolve to the same name.
2. `refusal` (in the session, just before the query runs): every function and operator the
   statement calls is looked up in `pg_proc` on the server itself; one that may resolve to a
   VOLATILE function (PostgreSQL's own mark for "has side effects") is refused unless it is
   on `READ_VOLATILE`, the short list of volatile built-ins that only read (sizes, WAL
   positions, clocks). A SECURITY DEFINER function outside pg_catalog is refused too: it
   runs with its owner's powers. This is the allow-list: a function nobody listed, user-made
   or from an extension, is allowed only when the server says it is STABLE or IMMUTABLE.
3. The session: `default_transaction_read_only=on` and `BEGIN READ ONLY` (probes.postgres),
   so a write that got past both (through a view, a trigger, a mislabelled function) fails
   with SQLSTATE 25006.

Only the first lock runs where pglast is missing; pglast is a dependency, so it is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Statements that only read. A VALUES or TABLE statement is a SelectStmt in the grammar.
_READING = {"SelectStmt": "SELECT", "VariableShowStmt": "SHOW", "ExplainStmt": "EXPLAIN"}

# Built-ins that act on the server even in a read-only transaction (signals, locks, resets,
# files, sessions elsewhere), or that run SQL given as text the parser cannot see.
_ACTING = re.compile(
    r"pg_terminate_backend|pg_cancel_backend|pg_signal_backend|pg_reload_conf|pg_rotate_logfile\w*|"
    r"pg_(try_)?advisory\w*|pg_stat\w*reset\w*|pg_file_\w+|pg_logdir_ls|pg_logfile_rotate|lo_\w+|loread|lowrite|"
    r"dblink\w*|set_config|setseed|nextval|setval|pg_notify|pg_switch_wal|pg_create_\w+|pg_drop_replication_slot|"
    r"pg_copy_\w+_replication_slot|pg_replication_slot_advance|pg_replication_origin_\w+|pg_logical_\w+|"
    r"pg_promote|pg_wal_replay_\w+|pg_backup_\w+|pg_start_backup|pg_stop_backup|pg_log_\w+|"
    r"pg_import_system_collations|pg_export_snapshot|pg_extension_config_dump|binary_upgrade_\w+|"
    r"txid_current|pg_current_xact_id|gin_clean_pending_list|brin_\w*summarize\w*|pg_truncate_visibility_map|"
    r"pg_prewarm|autoprewarm_\w+|pg_stop_making_pinned_objects|query_to_xml\w*|query_to_xmlschema|"
    r"cursor_to_xml\w*|ts_stat|ts_rewrite|pg_stat_force_next_flush|system",
    re.IGNORECASE,
)

# Volatile built-ins that only read: allowed although the server marks them VOLATILE.
READ_VOLATILE = frozenset(
    [
        "array_sample",
        "array_shuffle",
        "clock_timestamp",
        "current_query",
        "currval",
        "lastval",
        "gen_random_uuid",
        "random",
        "random_normal",
        "timeofday",
        "pg_blocking_pids",
        "pg_safe_snapshot_blocking_pids",
        "pg_isolation_test_session_is_blocked",
        "pg_collation_actual_version",
        "pg_database_collation_actual_version",
        "pg_control_checkpoint",
        "pg_control_init",
        "pg_control_recovery",
        "pg_control_system",
        "pg_current_logfile",
        "pg_current_wal_flush_lsn",
        "pg_current_wal_insert_lsn",
        "pg_current_wal_lsn",
        "pg_database_size",
        "pg_indexes_size",
        "pg_relation_size",
        "pg_table_size",
        "pg_tablespace_size",
        "pg_total_relation_size",
        "pg_get_backend_memory_contexts",
        "pg_get_multixact_members",
        "pg_get_shmem_allocations",
        "pg_get_wal_replay_pause_state",
        "pg_get_wal_resource_managers",
        "pg_hba_file_rules",
        "pg_ident_file_mappings",
        "pg_show_all_file_settings",
        "pg_is_in_recovery",
        "pg_is_wal_replay_paused",
        "pg_jit_available",
        "pg_last_committed_xact",
        "pg_last_wal_receive_lsn",
        "pg_last_wal_replay_lsn",
        "pg_last_xact_replay_timestamp",
        "pg_lock_status",
        "pg_ls_archive_statusdir",
        "pg_ls_dir",
        "pg_ls_logdir",
        "pg_ls_logicalmapdir",
        "pg_ls_logicalsnapdir",
        "pg_ls_replslotdir",
        "pg_ls_tmpdir",
        "pg_ls_waldir",
        "pg_notification_queue_usage",
        "pg_partition_ancestors",
        "pg_partition_tree",
        "pg_prepared_xact",
        "pg_read_binary_file",
        "pg_read_file",
        "pg_stat_file",
        "pg_sequence_last_value",
        "pg_sleep",
        "pg_sleep_for",
        "pg_sleep_until",
        "pg_stat_get_io",
        "pg_stat_get_recovery_prefetch",
        "pg_stat_have_stats",
        "pg_stat_clear_snapshot",
        "pg_xact_commit_timestamp",
        "pg_xact_commit_timestamp_origin",
        "pg_xact_status",
        "txid_status",
        "pg_show_replication_origin_status",
        "pg_stat_statements",
        "pg_stat_statements_info",
    ]
)
_READ_VOLATILE_PREFIXES = ("pg_stat_get_xact_",)


def _is_read_volatile(name: str) -> bool:
    return name in READ_VOLATILE or name.startswith(_READ_VOLATILE_PREFIXES)


@dataclass(frozen=True)
class Call:
    """A function or operator a statement calls: its schema when qualified, and its name as the server reads it."""

    schema: str | None
    name: str
    operator: bool = False

    @property
    def shown(self) -> str:
        name = f"{self.schema}.{self.name}" if self.schema else self.name
        return f"operator {name}" if self.operator else f"{name}()"


def _names(nodes: Any) -> list[str]:
    return [getattr(node, "sval", str(node)) for node in nodes or ()]


def _call(nodes: Any, *, operator: bool = False) -> Call:
    parts = _names(nodes)
    return Call(parts[-2] if len(parts) > 1 else None, parts[-1], operator)


# Nodes are told apart by their class names, never with isinstance: pglast is imported only when a
# profile has SQL to read, and pytest's in-process runs may import it afresh (new classes) later.
def _kind(node: Any) -> str:
    return type(node).__name__


def _nodes(tree: Any) -> Iterator[Any]:
    """Every node of a parse tree, depth first (pglast's Visitor is heavier than this walk needs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (list, tuple)):
            stack.extend(node)
        elif type(node).__module__ == "pglast.ast":
            yield node
            stack.extend(getattr(node, slot) for slot in node.__slots__)


def _statement(sql: str) -> Any:
    from pglast import parse_sql

    try:
        statements = parse_sql(sql)
    except Exception as exc:  # pglast.parser.ParseError, but see _kind for why not by its class
        if _kind(exc) != "ParseError":
            raise
        raise ValueError(f"not valid SQL: {exc}") from None
    if not statements:
        raise ValueError("empty SQL")
    if len(statements) > 1:
        raise ValueError("more than one statement: a query is one read-only statement")
    return statements[0].stmt


_VERBS = {"VariableSetStmt": "SET", "TransactionStmt": "BEGIN/COMMIT/ROLLBACK", "CreateTableAsStmt": "CREATE TABLE AS"}


def _refuse_statement(node: Any) -> None:
    kind = _kind(node)
    if kind.endswith("Stmt") and kind not in _READING:
        verb = _VERBS.get(kind) or re.sub(r"(?<!^)(?=[A-Z])", " ", kind.removesuffix("Stmt")).upper()
        raise ValueError(f"{verb} is not a read-only statement: use SELECT, WITH, SHOW, VALUES, TABLE or EXPLAIN")
    if kind == "IntoClause":
        raise ValueError("SELECT INTO creates a table: checks never write to their targets")
    if kind == "LockingClause":
        raise ValueError("SELECT ... FOR UPDATE/SHARE takes row locks: checks never write to their targets")
    if kind == "ExplainStmt":
        for option in node.options or ():
            if option.defname in ("analyze", "analyse") and _truthy(option.arg):
                raise ValueError("EXPLAIN ANALYZE runs the statement: use EXPLAIN without ANALYZE")


def _truthy(arg: Any) -> bool:
    value = getattr(arg, "sval", None) or getattr(arg, "boolval", None)
    if value is None:
        return arg is None  # `EXPLAIN (ANALYZE)`: no value means on
    text = str(getattr(value, "boolval", value)).lower()
    return text not in ("false", "off", "0", "no")


def calls(sql: str) -> list[Call]:
    """Every function and operator the statement names (the statement is assumed valid)."""
    found: dict[Call, None] = {}
    for node in _nodes(_statement(sql)):
        if _kind(node) == "FuncCall":
            found[_call(node.funcname)] = None
        elif _kind(node) == "A_Expr" and node.name:
            found[_call(node.name, operator=True)] = None
    return list(found)


def read_only_sql(sql: str) -> str:
    """Refuse, before anything is sent, SQL that is not one read-only statement.

    The session is read-only as well and the server is asked about every function before
    the query runs; this lock gives the profile's author a message at the line they wrote.
    """
    if not sql.strip().rstrip(";").strip():
        raise ValueError("empty SQL")
    tree = _statement(sql)
    if _kind(tree) not in _READING:
        _refuse_statement(tree)
    for node in _nodes(tree):
        _refuse_statement(node)
    for call in calls(sql):
        if not call.operator and _ACTING.fullmatch(call.name):
            raise ValueError(f"{call.name.upper()} is not allowed: it acts on the server; checks never write")
    return sql


# The functions (and the functions behind the operators) a statement may call, as the server resolves
# names: a qualified name in its schema, an unqualified one in any schema of the search path.
_RESOLVE_SQL = """
with wanted(schema, name, operator) as (select * from unnest(%s::text[], %s::text[], %s::bool[])),
searched as (select oid, nspname from pg_namespace where nspname = any(current_schemas(true)))
select w.name, false, n.nspname::text, p.proname::text, p.provolatile::text, p.prosecdef
from wanted w join pg_proc p on p.proname = w.name join pg_namespace n on n.oid = p.pronamespace
where not w.operator and (n.nspname = w.schema or (w.schema is null and n.oid in (select oid from searched)))
union all
select w.name, true, n.nspname::text, p.proname::text, p.provolatile::text, p.prosecdef
from wanted w join pg_operator o on o.oprname = w.name join pg_namespace opn on opn.oid = o.oprnamespace
join pg_proc p on p.oid = o.oprcode join pg_namespace n on n.oid = p.pronamespace
where w.operator and (opn.nspname = w.schema or (w.schema is null and opn.oid in (select oid from searched)))
"""


async def refusal(conn: Any, sql: str) -> str | None:
    """Why the server's own catalogue says this statement must not run (None: it may)."""
    wanted = calls(sql)
    if not wanted:
        return None
    cur = await conn.execute(
        _RESOLVE_SQL,
        [[c.schema for c in wanted], [c.name for c in wanted], [c.operator for c in wanted]],
    )
    for name, operator, schema, proname, volatility, security_definer in await cur.fetchall():
        what = f"operator {name} ({schema}.{proname})" if operator else f"{schema}.{proname}()"
        if volatility == "v" and not (schema == "pg_catalog" and _is_read_volatile(proname)):
            return f"{what} is VOLATILE (it may change something) and not on opsproof's list of read-only functions"
        if security_definer and schema != "pg_catalog":
            return f"{what} is SECURITY DEFINER: it runs with its owner's powers"
    return None


# What the session's role could do that a check never needs: each row a power and whether it is held.
ROLE_POWERS_SQL = """
select 'superuser', rolsuper from pg_roles where rolname = current_user
union all select 'member of pg_signal_backend (may cancel or end other sessions)',
    pg_has_role('pg_signal_backend', 'MEMBER')
union all select 'member of pg_write_server_files', pg_has_role('pg_write_server_files', 'MEMBER')
union all select 'member of pg_execute_server_program', pg_has_role('pg_execute_server_program', 'MEMBER')
union all select 'may create roles', rolcreaterole from pg_roles where rolname = current_user
union all select 'may write to ' || coalesce((
    select string_agg(t, ', ') from (
      select c.oid::regclass::text as t from pg_class c
      where c.relkind in ('r', 'p') and c.relnamespace not in ('pg_catalog'::regnamespace,
            'information_schema'::regnamespace)
        and has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
      order by 1 limit 3) shown), ''), exists (
    select 1 from pg_class c
    where c.relkind in ('r', 'p') and c.relnamespace not in ('pg_catalog'::regnamespace,
          'information_schema'::regnamespace)
      and has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE'))
"""
