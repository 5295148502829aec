"""Everything lvsd checks before it runs a configuration, in one place for ``lvsd run``, a
SIGHUP reload, ``lvsd check-config`` and ``lvsd run -t``: so ``check-config`` predicts ``run``.

Three stages add diagnostics to the loader's own, then :func:`lvsd.config.verdict.decide`
decides:

1. semantic checks of the parts that will run (``mode``): every VRRP instance turns into a
   runnable spec, a trial plan of the pool with every server alive, and what the chosen data
   plane refuses of each service, real server and sorry server;
2. host checks as ``keepalived -t`` does them (interfaces, addresses, script files, script
   security): :mod:`lvsd.config.hostcheck` decides, :mod:`lvsd.config.hostfacts` reads the host;
3. the verdict: FATAL stops (keepalived would not run it either), ERROR is logged and run
   through (keepalived's policy) unless ``strict``.

The semantic stage's severities: a VRRP instance lvsd cannot build is FATAL (keepalived's
``vrrp_complete_instance`` refusing it stops its VRRP process); a plan problem (two virtual
servers claiming one service) is an ERROR, the second one is ignored as keepalived ignores a
duplicate; what the kernel's IPVS would refuse (an unknown scheduler) is an ERROR as it is for
keepalived, which logs the failed IPVS command and runs on; what lvsd's nftables data plane
cannot carry (DR, TUN) is FATAL: the operator chose a data plane that cannot do the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lvsd.config.model import Config, DiagKind, Diagnostic, Severity
from lvsd.config.verdict import Verdict, decide, positioned

if TYPE_CHECKING:
    from lvsd.config.hostcheck import HostResult

log = logging.getLogger(__name__)


def runs_vrrp(mode: str) -> bool:
    return mode in ("full", "vrrp-only")


def runs_checks(mode: str) -> bool:
    return mode in ("full", "check-only")


def refuser(dataplane: str, nft_table: str = "lvsd") -> Callable[[object], str | None] | None:
    """The data plane's ``refuse`` (pure: needs no kernel access), None for the memory one."""
    if dataplane == "ipvs":
        from lvsd.dataplane.ipvs import IPVSDataPlane

        return IPVSDataPlane().refuse  # type: ignore[return-value]  # spec types narrower
    if dataplane == "nftables":
        from lvsd.dataplane.nftables import NftablesDataPlane

        return NftablesDataPlane(nft_table).refuse  # type: ignore[return-value]
    return None


def semantic(cfg: Config, *, mode: str, dataplane: str, vrrp_transport: str = "raw",
             nft_table: str = "lvsd") -> list[Diagnostic]:
    """Stage 1 (see the module docstring). Never raises."""
    out: list[Diagnostic] = []
    if cfg.fatal:
        return out
    if runs_vrrp(mode) and cfg.vrrp_instances:  # (no VRRP stack import for an LVS-only file)
        from lvsd.vrrp.spec import InstanceSpec

        for inst in cfg.vrrp_instances:
            try:
                InstanceSpec.from_config(inst, cfg, transport=vrrp_transport)
            except (ValueError, KeyError) as exc:
                out.append(Diagnostic(inst.pos, Severity.FATAL,
                                      f"({inst.name}) lvsd cannot run this vrrp_instance: {exc}",
                                      DiagKind.FATAL))
    out += _sync_daemon_checks(cfg, mode=mode, dataplane=dataplane)
    if cfg.bgp_announces and not runs_checks(mode):  # lvsd.daemon.bgpservice needs the pool
        out.append(Diagnostic(cfg.bgp_announces[0].pos, Severity.WARNING,
                              f"bgp_announce is driven by lvsd's pool, which --{mode} does not "
                              "run: nothing is announced", DiagKind.LVSD))
    if runs_checks(mode):
        from lvsd.checks.health import RealServerHealth
        from lvsd.pool.planner import Planner, refusals

        try:
            trial = Planner(cfg)
            up = RealServerHealth(alive=True)  # frozen: one for every server
            alive = {Planner.rs_id(vs, rs): up
                     for vs in cfg.virtual_servers for rs in vs.real_servers}
            plan = trial.plan(alive, time.monotonic())
        except Exception as exc:  # a planner bug must not become a traceback
            log.exception("trial plan failed")
            return [*out, Diagnostic(None, Severity.FATAL,
                                     f"cannot plan the pool: {type(exc).__name__}: {exc}")]
        out += [positioned(p, Severity.ERROR) for p in plan.problems]
        refuse = refuser(dataplane, nft_table)
        if refuse is not None:
            sev = Severity.ERROR if dataplane == "ipvs" else Severity.FATAL
            out += [positioned(r, sev, DiagKind.GENERAL if sev is Severity.ERROR
                               else DiagKind.FATAL)
                    for r in refusals(cfg, refuse)]
    return out


def _sync_daemon_checks(cfg: Config, *, mode: str, dataplane: str) -> list[Diagnostic]:
    """``lvs_sync_daemon``: the named VRRP instance must exist (keepalived vrrp.c
    vrrp_complete_init clears the setting and logs, then runs); the nftables data plane has no
    IPVS connection sync to drive (FATAL, like the other things it cannot carry)."""
    sd = cfg.global_defs.lvs_sync_daemon
    if sd is None:
        return []
    out = []
    if sd.instance is not None and all(i.name != sd.instance for i in cfg.vrrp_instances):
        out.append(Diagnostic(sd.pos, Severity.ERROR, f"Unable to find vrrp instance "
                              f"{sd.instance} for lvs_syncd - clearing lvs_syncd config",
                              DiagKind.GENERAL))
    elif not runs_checks(mode):
        out.append(Diagnostic(
            sd.pos, Severity.WARNING, "lvs_sync_daemon is driven by lvsd's pool, which "
            f"--{mode} does not run: no IPVS sync daemon is started", DiagKind.LVSD))
    elif dataplane == "nftables":
        out.append(Diagnostic(
            sd.pos, Severity.FATAL, "lvs_sync_daemon needs the kernel IPVS sync daemon: the "
            "nftables data plane has no connection sync (conntrackd is not driven by lvsd); "
            "use --dataplane ipvs or remove lvs_sync_daemon", DiagKind.FATAL))
    return out


@dataclass(frozen=True, slots=True)
class Preflight:
    """What :func:`preflight` found: the verdict, and the config to run (the loaded one less
    the scripts keepalived would not run on this host, :mod:`lvsd.config.prune`)."""

    verdict: Verdict
    config: Config


def host(cfg: Config, *, mode: str) -> HostResult:
    """Stage 2: the host checks (interfaces, addresses, scripts). Never raises."""
    from lvsd.config.hostcheck import HostResult, host_result
    from lvsd.config.hostfacts import gather

    if cfg.fatal:
        return HostResult(())
    try:
        facts = gather(cfg, mode=mode)
    except Exception as exc:  # reading the host must not take lvsd down
        log.exception("reading the host for the config checks failed")
        return HostResult((Diagnostic(
            None, Severity.WARNING, f"could not read the host to check the config: {exc}",
            DiagKind.LVSD),))
    return host_result(cfg, facts, mode=mode)


def preflight(cfg: Config, *, mode: str = "full", dataplane: str = "ipvs", strict: bool = False,
              vrrp_transport: str = "raw", nft_table: str = "lvsd",
              check_host_: bool = True) -> Preflight:
    """Every check, then the verdict. Never raises."""
    extra = semantic(cfg, mode=mode, dataplane=dataplane, vrrp_transport=vrrp_transport,
                     nft_table=nft_table)
    run_cfg = cfg
    if check_host_:
        from lvsd.config.prune import without_scripts

        found = host(cfg, mode=mode)
        extra += found.diagnostics
        run_cfg = without_scripts(cfg, found.dropped_scripts)
    return Preflight(decide(cfg, extra, strict=strict), run_cfg)
