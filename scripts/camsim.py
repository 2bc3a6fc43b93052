#!/usr/bin/python3
"""Camera simulator: serve video files as looping RTSP cameras, without re-encoding.

Run it with Debian's ``/usr/bin/python3`` (it needs ``gi`` and GStreamer's RTSP server,
packages ``gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad} python3-gi``)::

    /usr/bin/python3 scripts/camsim.py [--host 127.0.0.1] [--port 8554] [--shared] \\
        [--start MOUNT=SECONDS ...] [--delay MOUNT=SECONDS ...] MOUNT=FILE [MOUNT=FILE ...]

    /usr/bin/python3 scripts/camsim.py lobby/main=/x/a.mp4 lobby/sub=/x/a_sub.mp4

Each ``MOUNT=FILE`` is served at ``rtsp://HOST:PORT/MOUNT`` (MOUNT may contain slashes).
Inputs: MP4/MOV or MKV files with an H.264 video track, sent as they are (no re-encoding);
only the first video track is served, audio tracks are ignored. Once the server listens it
prints ``READY rtsp://HOST:PORT``, then ``MOUNT rtsp://HOST:PORT/<mount>`` for each mount, on
stdout. SIGTERM / SIGINT stop it cleanly. A missing or unsupported file exits with status 2,
a port already in use with status 1.

Independent cameras (what a benchmark of many cameras needs: real cameras are not in step):
``--start MOUNT=S`` starts the mount's first loop at S seconds into the file (snapped back to
the keyframe at or before S: a client must begin with one), later loops from 0;
``--delay MOUNT=D`` holds the mount's first frame back D seconds after PLAY (a running-time
offset), which moves its keyframes, and so its decode bursts, off those of the other mounts.

By default every client gets its own pipeline (unshared factory), so each client sees its own
timeline starting at 0. With ``--shared`` all clients of a mount share one pipeline; the
loop survives, but each new client rewinds the file for everybody (their timestamps jump
back): keep ``--shared`` away from timestamp-sensitive tests.

How the loop keeps timestamps growing (``multifilesrc loop=true`` over raw H.264 would give
every frame the same timestamp):

* before the first PLAY is handled, a flushing *segment* seek to 0: the demuxer then ends
  the file with a SEGMENT_DONE message instead of EOS;
* on each SEGMENT_DONE a non-flushing segment seek to 0: running time, hence the RTP
  timestamps, go on from where they were;
* the demuxer would start each loop at the *start* time of the last frame (the first frame
  would repeat the last one's timestamp): a pad offset adds the missing frame duration.

Pitfalls met on GStreamer 1.22: a seek sent to the whole media pipeline also goes up the RTCP
branch and does not loop; send it to the payloader. A seek from ``GLib.idle_add`` after
"prepared" races the client's PLAY (which reads the payloader's segment, gone during a flush)
and now and then aborts the server with a ``gst_rtsp_media_get_rates`` assertion: the first
seek is made in the client's ``pre-play-request`` handler, which waits for the stream to be
prerolled again. The server's own seeks (a PLAY Range away from the current position) get
the segment flag added, so that they do not end the loop.
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
UNSUPPORTED = {".h264", ".264", ".h265", ".265"}  # raw streams: no timestamps to loop with


class LoopingMedia(GstRtspServer.RTSPMedia):
    """An RTSP media that plays its file in a loop with ever-growing timestamps."""

    rewound = None  # threading.Event once the first seek is under way
    start_s = 0.0  # first loop starts here (set per mount by the factory's media-constructed handler)
    delay_s = 0.0  # first frame held back this long (a running-time offset on the demuxer's pads)
    own_seek = False  # the loop's own seek to 0 is under way (the probe must not move it to start_s)

    def _seek(self, flags, position=0):
        # Through the payloader: the event goes up the video branch to the demuxer. (A seek
        # on the whole pipeline also goes up the RTCP branch, and does not loop.)
        pay = self.get_element().get_by_name("pay0")
        return pay.seek(1.0, Gst.Format.TIME, flags, Gst.SeekType.SET, position, Gst.SeekType.NONE, -1)

    def start_looping(self):
        """The first, flushing, segment seek. Runs in the client's thread before its PLAY is
        handled, and waits until the stream is prerolled again: PLAY reads the payloader's
        segment, which a flush removes (an unsynchronised seek, e.g. from an idle callback
        after "prepared", crashed the server now and then with a get_rates assertion)."""
        if self.rewound is None:
            self.rewound = threading.Event()
            pay_src = self.get_element().get_by_name("pay0").get_static_pad("src")
            pay_src.add_probe(Gst.PadProbeType.EVENT_UPSTREAM, self._keep_segment_flag)
            flags = Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT
            if self.start_s > 0:  # a client must begin with a keyframe: the one at or before start_s
                flags |= Gst.SeekFlags.KEY_UNIT | Gst.SeekFlags.SNAP_BEFORE
            if self.delay_s > 0:  # set before the flush: the first buffer after it already carries it
                for pad in self.get_element().get_by_name("d").srcpads:
                    pad.set_offset(pad.get_offset() + int(self.delay_s * Gst.SECOND))
            if self._seek(flags, int(self.start_s * Gst.SECOND)):
                self.rewound.wait(5)

    def _keep_segment_flag(self, pad, info):
        # The server seeks on its own when a PLAY asks for a Range away from the current
        # position (on a shared media, every new client asks for npt=0-). Without the
        # segment flag the file would then end with EOS: add the flag.
        # With a start offset, the client's PLAY (npt=0-) finds the stream away from 0 and the server
        # seeks back to 0: that seek goes to start_s instead (the mount's "0").
        event = info.get_event()
        if event.type == Gst.EventType.SEEK:
            rate, fmt, flags, start_type, start, stop_type, stop = event.parse_seek()
            to_start = (not self.own_seek and self.start_s > 0 and fmt == Gst.Format.TIME
                        and start_type == Gst.SeekType.SET and start == 0)
            if not flags & Gst.SeekFlags.SEGMENT or to_start:
                if to_start:
                    start = int(self.start_s * Gst.SECOND)
                    flags |= Gst.SeekFlags.KEY_UNIT | Gst.SeekFlags.SNAP_BEFORE
                pad.get_parent_element().seek(rate, fmt, flags | Gst.SeekFlags.SEGMENT,
                                              start_type, start, stop_type, stop)
                return Gst.PadProbeReturn.DROP
        return Gst.PadProbeReturn.OK

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
            self.own_seek = True  # events go upstream synchronously: the probe sees this seek now
            try:
                self._seek(Gst.SeekFlags.SEGMENT)
            finally:
                self.own_seek = False
            return True
        return GstRtspServer.RTSPMedia.do_handle_message(self, message)


def on_pre_play(client, ctx):
    if isinstance(ctx.media, LoopingMedia):
        ctx.media.start_looping()
    return GstRtsp.RTSPStatusCode.OK


def _set_offsets(_factory, media, start_s, delay_s):
    media.start_s = start_s
    media.delay_s = delay_s


def launch_line(path, lean=False):
    """The gst-launch description serving the H.264 video of ``path`` as ``pay0``.

    ``lean`` leaves out the queue (a thread per client) and h264parse: the payloader takes the
    demuxer's AVC output as it is, and the packets on the wire are the same RTP packets.
    """
    quoted = '"%s"' % path.replace("\\", "\\\\").replace('"', '\\"')
    demux = DEMUXERS.get(os.path.splitext(path)[1].lower(), "qtdemux")
    middle = "" if lean else "queue ! h264parse ! "
    return ("( filesrc location=%s ! %s name=d d.video_0 ! %s"
            "rtph264pay name=pay0 pt=96 config-interval=1 )" % (quoted, demux, middle))


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


def parse_seconds(specs, mounts, option):
    """``MOUNT=SECONDS`` options for mounts that exist; SECONDS >= 0."""
    out = {}
    for spec in specs or []:
        mount, sep, value = spec.partition("=")
        mount = mount.strip("/")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not sep or mount not in mounts or not seconds >= 0:
            raise ValueError("bad %s %r, expected MOUNT=SECONDS for a served mount" % (option, spec))
        out[mount] = seconds
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="Serve video files as looping RTSP cameras.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    ap.add_argument("--shared", action="store_true", help="one pipeline shared by all clients of a mount")
    ap.add_argument("--lean", action="store_true",
                    help="no queue thread and no h264parse per client: cheaper for many cameras, same RTP")
    ap.add_argument("--start", action="append", metavar="MOUNT=SECONDS",
                    help="first loop of MOUNT starts this far into the file (at the keyframe before it)")
    ap.add_argument("--delay", action="append", metavar="MOUNT=SECONDS",
                    help="hold MOUNT's first frame back this long after PLAY (shifts its keyframes)")
    ap.add_argument("mounts", nargs="+", metavar="MOUNT=FILE")
    args = ap.parse_args(argv)

    try:
        mounts = parse_mounts(args.mounts)
        starts = parse_seconds(args.start, mounts, "--start")
        delays = parse_seconds(args.delay, mounts, "--delay")
    except ValueError as exc:
        print("camsim: %s" % exc, file=sys.stderr)
        return 2
    errors = ["file not found: %s" % p for p in mounts.values() if not os.path.isfile(p)]
    errors += ["unsupported raw stream (wrap it in MP4 or MKV): %s" % p for p in mounts.values()
               if os.path.splitext(p)[1].lower() in UNSUPPORTED]
    for error in errors:
        print("camsim: " + error, file=sys.stderr)
    if errors:
        return 2

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    server.connect("client-connected", lambda _server, client: client.connect("pre-play-request", on_pre_play))
    table = server.get_mount_points()
    for mount, path in mounts.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(path, args.lean))
        factory.set_shared(args.shared)
        factory.set_media_gtype(LoopingMedia)
        if mount in starts or mount in delays:
            factory.connect("media-constructed", _set_offsets, starts.get(mount, 0.0), delays.get(mount, 0.0))
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
