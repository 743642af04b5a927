"""A marimo app with a VideoRoom: `marimo run notebooks/marimo_room.py`, then open its address.

Every tab of the app, every other marimo app or notebook of yours on this machine, and every
Jupyter notebook or Voilà dashboard of yours that opens the same room meet in it: they share one
signaller (the first to need it hosts it, the others attach; when the host's server ends, another
takes over and the call goes on). As a script (`python notebooks/marimo_room.py`) it only runs its
cells, with no one to see them.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo

    mo.md(
        """
        # Lobby

        Type your name and press **Connect**: everyone who opens this app, or any notebook of
        yours on this machine with `VideoRoom("lobby")`, meets here, with video and a chat.
        """
    )
    return (mo,)


@app.cell
def _(mo):
    import os

    from ipymeet import VideoRoom

    # One fixed room for every visitor (tests give each run a room of their own).
    room = VideoRoom(os.environ.get("IPYMEET_MARIMO_ROOM", "lobby"))
    mo.ui.anywidget(room)
    return (room,)


if __name__ == "__main__":
    app.run()
