"""``flowsink stack``: the whole stack, on Docker Compose when an engine answers, else as local processes.

    flowsink stack up [--nodes N]       start it and print every URL (``make run``)
    flowsink stack down                 end what ``up`` started (``make stop``)
    flowsink stack status               Docker: ``compose ps``; local: one line per process
                                        (exit status 0 all running, 1 some not, 3 stopped)
    flowsink stack urls                 the addresses again
    flowsink stack render               local: write the generated configs without starting anything
    flowsink stack watch [--docker]     the nginx_watch process ``up`` starts (--docker: the nginx-watch service)
    flowsink stack images [--force]     build the images docker-compose.local.yml names (no registry needed)
    flowsink stack demo                 send real captures through the front from three exporter addresses
    flowsink stack import-kibana        load the Kibana saved objects into a Kibana
    flowsink stack entrypoint [-- CMD]  the ingest container's entry point: claim a queue slot, exec CMD

The mode: ``FLOWSINK_STACK_MODE=local|docker`` forces one; else a stack started earlier keeps its own (written
in the run folder), so ``down`` ends what ``up`` started; else Docker when ``docker info`` succeeds, else local.
The local stack's settings (``FLOWSINK_STACK_NODES``, ``FLOWSINK_STACK_PORT_OFFSET``, ...) are in ``local.py``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from flowsink.stack import StackError, default_run_dir, log

HELP = "the whole stack: up, down, status, urls (Docker Compose when an engine answers, else local processes)"
MODES = ("local", "docker")
# actions that run on either mode; the others are the local stack's own
EITHER_MODE = ("up", "down", "status", "urls")
ALIASES = {"start": "up", "stop": "down"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from flowsink.stack import demo, docker_watch, kibana_import

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, summary: str, aliases: tuple[str, ...] = (), run_dir: bool = True):
        command = sub.add_parser(name, help=summary, description=summary, aliases=list(aliases))
        if run_dir:
            command.add_argument(
                "--run-dir", type=Path, help="run folder (default FLOWSINK_STACK_DIR or .run/stack)"
            )
        return command

    up = action("up", "start the stack and print every URL", aliases=("start",))
    up.add_argument("--nodes", type=int, help="number of ingest nodes (default FLOWSINK_STACK_NODES or 3)")
    action("down", "end what `up` started", aliases=("stop",))
    action("status", "what runs (exit status 0 all running, 1 some not, 3 stopped)")
    action("urls", "every address of the stack")
    render = action("render", "local stack: write the generated configs without starting anything")
    render.add_argument(
        "--nodes", type=int, help="number of ingest nodes (default FLOWSINK_STACK_NODES or 3)"
    )
    watch = action("watch", "keep nginx's upstreams in step with the live nodes (local: started by `up`)")
    watch.add_argument(
        "--docker", action="store_true", help="in the Compose stack's nginx-watch service (docker_watch.py)"
    )
    docker_watch.add_arguments(watch)
    images = action("images", "build the images docker-compose.local.yml names, from package registries only")
    images.add_argument("--force", action="store_true", help="rebuild every image, even those up to date")
    demo.add_arguments(action("demo", demo.HELP, run_dir=False))
    kibana_import.add_arguments(action("import-kibana", kibana_import.HELP, run_dir=False))
    entry = action(
        "entrypoint",
        "the ingest container's entry point: claim a queue slot, then exec COMMAND",
        run_dir=False,
    )
    entry.add_argument("command", nargs=argparse.REMAINDER, help="default: flowsink run")


def choose_mode(run_dir: Path) -> str:
    """FLOWSINK_STACK_MODE, else the mode of the stack started in ``run_dir``, else docker if an engine answers."""
    forced = os.environ.get("FLOWSINK_STACK_MODE", "")
    if forced:
        if forced not in MODES:
            raise StackError(f"FLOWSINK_STACK_MODE={forced!r}: use one of {', '.join(MODES)}")
        return forced
    recorded = run_dir / "mode"
    if recorded.is_file() and recorded.read_text().strip() in MODES:
        return recorded.read_text().strip()
    from flowsink.stack import docker

    return "docker" if docker.engine_answers() else "local"


def main(args: argparse.Namespace) -> int:
    name = ALIASES.get(args.action, args.action)
    if name == "entrypoint":
        from flowsink.stack import entrypoint

        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        return entrypoint.main(command)
    if name == "demo":
        from flowsink.stack import demo

        return demo.main(args)
    if name == "images":
        from flowsink.stack import docker, images

        try:
            stack = docker.ComposeStack.from_env(default_run_dir())
            built = images.build_all(stack.root, force=args.force, environ=stack.settings())
        except StackError as exc:
            log(f"error: {exc}")
            return 1
        for service, image in built.items():
            print(f"{service:<24} {image}")
        return 0
    if name == "watch" and args.docker:
        from flowsink.stack import docker_watch

        docker_watch.watch(args.service, args.config, args.interval, args.forget_after)
        return 0
    if name == "import-kibana":
        from flowsink.stack import kibana_import

        return kibana_import.main(args)
    run_dir = (args.run_dir or default_run_dir()).resolve()
    nodes = getattr(args, "nodes", None)
    try:
        if name not in EITHER_MODE:
            from flowsink.stack import local

            return local.run(name, nodes, run_dir)
        return _either_mode(name, nodes, run_dir)
    except StackError as exc:
        log(f"error: {exc}")
        return 1


def _either_mode(name: str, nodes: int | None, run_dir: Path) -> int:
    mode = choose_mode(run_dir)
    mode_file = run_dir / "mode"
    if name == "up":
        run_dir.mkdir(parents=True, exist_ok=True)
        mode_file.write_text(mode + "\n")
    try:
        if mode == "docker":
            from flowsink.stack import docker

            status = docker.run(name, nodes or int(os.environ.get("FLOWSINK_STACK_NODES", "3")), run_dir)
        else:
            from flowsink.stack import local

            status = local.run(name, nodes, run_dir)
    except BaseException:
        if name == "up":
            mode_file.unlink(missing_ok=True)
        raise
    if name == "down" or (name == "up" and status != 0):
        mode_file.unlink(missing_ok=True)
    return status
