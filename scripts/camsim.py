#!/usr/bin/python3
"""Camera simulator: serve video files as looping RTSP cameras, without re-encoding.

Run it with Debian's ``/usr/bin/python3`` (it needs ``gi`` and GStreamer's RTSP server,
packages ``gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad} python3-gi``)::

    /usr/bin/python3 scripts/camsim.py [--host 127.0.0.1] [--port 8554] [--shared] \\
        MOUNT=FILE [MOUNT=FILE ...]

    /usr/bin/python3 scripts/camsim.py lobby/main=/x/a.mp4 lobby/sub=/x/a_sub.mp4

Each ``MOUNT=FILE`` is served at ``rtsp://HOST:PORT/MOUNT`` (MOUNT may contain slashes).
Inputs: MP4 (or MKV) with an H.264 video track; only the first video track is served, audio
tracks are ignored. Raw Annex-B ``.h264`` files are accepted too. Once the server listens it
prints ``READY rtsp://HOST:PORT`` then one ``MOUNT rtsp://HOST:PORT/<mount>`` line per mount on
stdout. SIGTERM / SIGINT stop it cleanly; a missing file exits with status 2.

By default every client gets its own pipeline (unshared factory): a shared GStreamer media
restarts every client's timestamps when another client connects, which breaks tests that
check timestamps. ``--shared`` serves one pipeline to all clients of a mount.

Looping trick: ``multifilesrc loop=true`` restarts timestamps at each loop. Instead the
media (``LoopingMedia``) does a *segment* seek to 0 once prepared, so that the demuxer posts
SEGMENT_DONE instead of EOS at the end of the file; each SEGMENT_DONE triggers another
(non-flushing) segment seek to 0. The pipeline's running time, hence the RTP timestamps,
keeps growing across loops. The first seek is deferred with ``GLib.idle_add``: seeking
inside the ``prepared`` handler deadlocks.
"""
import argparse
import os
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

Gst.init(None)  # before subclassing: the handle-message vfunc needs GstMessage's type

DEMUXERS = {".mp4": "qtdemux", ".m4v": "qtdemux", ".mov": "qtdemux", ".mkv": "matroskademux"}


class LoopingMedia(GstRtspServer.RTSPMedia):
    """An RTSP media that plays its file in a loop with ever-growing timestamps."""

    rewound = None  # threading.Event once the first seek is under way

    def _seek(self, flags):
        # Through the payloader: the event goes up the video branch to the demuxer. (A seek
        # on the whole pipeline also goes up the RTCP branch, and does not loop.)
        pay = self.get_element().get_by_name("pay0")
        return pay.seek(1.0, Gst.Format.TIME, flags, Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1)

    def start_looping(self):
        """The first, flushing, segment seek. Runs in the client's thread before its PLAY is
        handled, and waits until the stream is prerolled again: PLAY reads the payloader's
        segment, which a flush removes (an unsynchronised seek, e.g. from an idle callback
        after "prepared", crashed the server now and then with a get_rates assertion)."""
        if self.rewound is None:
            self.rewound = threading.Event()
            if self._seek(Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT):
                self.rewound.wait(5)

    def do_handle_message(self, message):
        if message.type == Gst.MessageType.ELEMENT and message.has_name("GstRTSPStreamBlocking"):
            if self.rewound is not None:
                self.rewound.set()  # data since the seek reached the payloader
        elif message.type == Gst.MessageType.SEGMENT_DONE:
            # The demuxer starts the next loop at the running time of its last frame's
            # *start*: the first frame of a loop would repeat the last one's timestamp. Shift
            # what follows by the missing frame duration (segment end - demuxer position).
            demux = self.get_element().get_by_name("d")
            _, end = message.parse_segment_done()
            ok, position = demux.query_position(Gst.Format.TIME)
            if ok and 0 < end - position < Gst.SECOND:
                for pad in demux.srcpads:
                    pad.set_offset(pad.get_offset() + end - position)
            # Not flushing: the running time, hence the RTP timestamps, keep growing.
            self._seek(Gst.SeekFlags.SEGMENT)
            return True
        return GstRtspServer.RTSPMedia.do_handle_message(self, message)


def on_pre_play(client, ctx):
    # A camera is live: ignore the client's Range. Otherwise the server seeks there without
    # the segment flag (ending the loop) and, on a shared media, rewinds every client.
    ctx.request.remove_header(GstRtsp.RTSPHeaderField.RANGE, -1)
    if isinstance(ctx.media, LoopingMedia):
        ctx.media.start_looping()
    return GstRtsp.RTSPStatusCode.OK


def launch_line(path):
    """The gst-launch description serving the H.264 video of ``path`` as ``pay0``."""
    quoted = '"%s"' % path.replace("\\", "\\\\").replace('"', '\\"')
    demux = DEMUXERS.get(os.path.splitext(path)[1].lower(), "qtdemux")
    return ("( filesrc location=%s ! %s name=d d.video_0 ! queue ! h264parse ! "
            "rtph264pay name=pay0 pt=96 config-interval=1 )" % (quoted, demux))


def parse_mounts(specs):
    mounts = {}
    for spec in specs:
        mount, sep, path = spec.partition("=")
        mount = mount.strip("/")
        if not sep or not mount or not path:
            raise ValueError("bad mount %r, expected MOUNT=FILE" % spec)
        if mount in mounts:
            raise ValueError("mount %r given twice" % mount)
        mounts[mount] = os.path.abspath(path)
    return mounts


def main(argv=None):
    ap = argparse.ArgumentParser(description="Serve video files as looping RTSP cameras.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    ap.add_argument("--shared", action="store_true", help="one pipeline shared by all clients of a mount")
    ap.add_argument("mounts", nargs="+", metavar="MOUNT=FILE")
    args = ap.parse_args(argv)

    try:
        mounts = parse_mounts(args.mounts)
    except ValueError as exc:
        print("camsim: %s" % exc, file=sys.stderr)
        return 2
    missing = [p for p in mounts.values() if not os.path.isfile(p)]
    if missing:
        for p in missing:
            print("camsim: file not found: %s" % p, file=sys.stderr)
        return 2

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    server.connect("client-connected", lambda _server, client: client.connect("pre-play-request", on_pre_play))
    table = server.get_mount_points()
    for mount, path in mounts.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(path))
        factory.set_shared(args.shared)
        factory.set_media_gtype(LoopingMedia)
        table.add_factory("/" + mount, factory)

    if server.attach(None) == 0:
        print("camsim: cannot listen on %s:%d" % (args.host, args.port), file=sys.stderr)
        return 1
    base = "rtsp://%s:%d" % (args.host, server.get_bound_port())
    print("READY " + base)
    for mount in mounts:
        print("MOUNT %s/%s" % (base, mount))
    sys.stdout.flush()

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
