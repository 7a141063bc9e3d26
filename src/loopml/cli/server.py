"""`loopml server ...`: the team server. `loopml server` runs it; `create-admin` makes the first admin (there is
no default account), `user add`, `grant`, `token create` and `token revoke` manage accounts from the server's
own shell."""

from __future__ import annotations

from typing import Annotated

import typer

from loopml.cli.output import console

app = typer.Typer(help="The team server: one LoopML over HTTP for a whole team, with accounts and roles.")
token_app = typer.Typer(help="Bearer tokens of users and services.", no_args_is_help=True)
user_app = typer.Typer(help="Users (people and services).", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(user_app, name="user")
workspace_app = typer.Typer(help="Workspaces: one team's stores and policies each.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")


@app.callback(invoke_without_command=True)
def server(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Address to bind (0.0.0.0 only inside a container)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on")] = 5000,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="A name clients reach the server by (Host header), repeatable; default 127.0.0.1, localhost"
        ),
    ] = None,
    anonymous_read: Annotated[
        bool, typer.Option("--anonymous-read", help="Let requests without a token read (off by default)")
    ] = False,
) -> None:
    """Run the team server until stopped."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from loopml.server.app import ServerOptions, create_server_app, hosts_of
    from loopml.tracking.tracker import default_tracker

    hosts = hosts_of(allowed_host or ["127.0.0.1", "localhost"])
    app_ = create_server_app(
        default_tracker(), options=ServerOptions(hosts=hosts, anonymous_read=anonymous_read)
    )
    typer.echo(f"LoopML team server on http://{host}:{port} (answers to {', '.join(hosts)})", err=True)
    uvicorn.run(app_, host=host, port=port, log_level="warning", access_log=False)


@app.command("create-admin")
def create_admin(name: Annotated[str, typer.Option("--name", help="The admin's user name")]) -> None:
    """Create the server's admin (admin of every workspace); their token is printed on the last line, once."""
    from loopml.server.accounts import AccountStore
    from loopml.tracking.tracker import default_tracker

    token = AccountStore(default_tracker().stores.db).create_admin(name)
    console.print(f"created admin {name}; their token (shown once, keep it secret):", highlight=False)
    print(token)


@user_app.command("add")
def add_user(
    name: Annotated[str, typer.Argument(help="User name")],
    role: Annotated[str, typer.Option(help="reader | editor | admin")] = "reader",
    workspace: Annotated[str, typer.Option(help="Workspace of the role (* for every workspace)")] = "default",
    model: Annotated[str | None, typer.Option(help="Only on this model")] = None,
    service: Annotated[bool, typer.Option("--service", help="A service account (CI, a scheduler)")] = False,
) -> None:
    """Add a user with a role, and print a token for them on the last line."""
    from loopml.server.accounts import AccountStore
    from loopml.tracking.tracker import default_tracker

    store = AccountStore(default_tracker().stores.db)
    user_id = store.create_user(name, kind="service" if service else "person", created_by="cli")
    store.grant(name, role, workspace=workspace, model=model)
    console.print(f"added {name} as {role}; their token (shown once):", highlight=False)
    print(store.issue_token(user_id, "cli"))


@app.command("grant")
def grant(
    name: Annotated[str, typer.Argument(help="User name")],
    role: Annotated[str, typer.Argument(help="reader | editor | admin")],
    workspace: Annotated[str, typer.Option(help="Workspace of the role")] = "default",
    model: Annotated[str | None, typer.Option(help="Only on this model")] = None,
) -> None:
    """Give a user a role in a workspace, or on one model of it."""
    from loopml.server.accounts import AccountStore
    from loopml.tracking.tracker import default_tracker

    AccountStore(default_tracker().stores.db).grant(name, role, workspace=workspace, model=model)
    console.print(f"{name} is {role} in {workspace}" + (f" on {model}" if model else ""), highlight=False)


@token_app.command("create")
def create_token(
    user: Annotated[str, typer.Option("--user", help="User name")],
    name: Annotated[str, typer.Option("--name", help="What the token is for")] = "cli",
) -> None:
    """A new token for a user, printed on the last line, once."""
    from loopml.server.accounts import AccountStore
    from loopml.tracking.tracker import default_tracker

    print(AccountStore(default_tracker().stores.db).token_for(user, name))


@token_app.command("revoke")
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="The token's id (the part after lml_)")],
) -> None:
    """Revoke a token: requests carrying it are refused from now on."""
    from loopml.server.accounts import AccountStore
    from loopml.tracking.tracker import default_tracker

    AccountStore(default_tracker().stores.db).revoke(token_id)
    console.print(f"revoked token {token_id}", highlight=False)


@workspace_app.command("create")
def create_workspace(
    name: Annotated[str, typer.Argument(help="Lower-case letters, digits and dashes")],
    database_url: Annotated[
        str | None, typer.Option(help="Its metadata database (default: SQLite in its folder)")
    ] = None,
    artifact_url: Annotated[str | None, typer.Option(help="Its blob store (default: a folder in it)")] = None,
) -> None:
    """Make a workspace; clients reach it at http://SERVER/w/NAME, people need a role in it."""
    from loopml.server.workspaces import create_workspace as create
    from loopml.tracking.tracker import default_tracker

    folder = create(default_tracker().settings, name, database_url=database_url, artifact_url=artifact_url)
    console.print(f"created workspace {name} in {folder}; its policies go in {folder / 'loopml.toml'}")
    console.print(f"grant roles with: loopml server grant USER editor --workspace {name}", highlight=False)


@workspace_app.command("list")
def list_workspaces() -> None:
    """The server's workspaces besides `default`."""
    from loopml.server.workspaces import list_workspaces as found
    from loopml.tracking.tracker import default_tracker

    for name in found(default_tracker().settings):
        print(name)
