"""Live video for the command room: a camera's own packets remuxed (never re-encoded) into fragmented MP4.

What lives here, in the order of the data path:

* ``fmp4.py`` -- :class:`~.fmp4.FragmentMuxer`: stored packets into an init segment (ftyp+moov) and
  one ``moof+mdat`` fragment per frame, the shape Media Source Extensions plays with the least delay;
* ``tap.py`` -- :class:`~.tap.LiveTap`: one stream of one camera offered to viewers: keeps the packets
  of the current GOP (so a new viewer starts at a keyframe at once), muxes only while somebody
  watches and stops a few seconds after the last viewer left, fans fragments, detection overlays
  (keyed by the fragment's media time) and, for browsers without MSE, JPEG pictures out to viewers;
  :class:`~.tap.LiveCamera` holds a camera's sub-stream tap and, when it has one, its main-stream tap;
* ``server.py`` -- :class:`~.server.LiveService`: the worker's side of the seam, a small authenticated
  loopback endpoint per worker (``<data_dir>/run/live/shard<N>.json`` names its port and token; with
  a cluster it binds ``cluster.live_listen`` and takes requests signed with the site key too);
* ``protocol.py`` -- the seam itself: message framing, the endpoint files and a small client.  It
  imports only the standard library, so the dashboard may import it (as it imports
  ``pipeline.publish.bus``) without importing anything of the worker.

Imports: the standard library, PyAV, numpy/OpenCV (JPEG fallback only), ``pipeline.record.packets``
(the timestamp repair is the recorder's, reused) and ``pipeline.live`` itself.  Nothing here imports
Redis, the web framework, ``pipeline.runtime`` or ``dashboard``; the worker calls in through
:class:`~.server.LiveService` and two hooks (packets in, analysed frames in).

Why this shape: a camera allows few RTSP sessions and the detector and the viewer must see the same
packets for the boxes to sit on the right frame, so live video comes from the worker's own input,
never from a second connection; see docs/live.md.
"""
