"""Recording: packets (capture), ring (pre-event), layout (names, index), mux (clips), segments, catalog, retention.

Imports only the standard library, PyAV and ``pipeline.config``; nothing of Redis, the web or the worker.

Import from the module that owns a name (``from pipeline.record.segments import SegmentWriter``);
this package re-exports nothing.  The data path: an input hands each demuxed packet to
``SegmentWriter.feed`` (or a bare ``PacketCapture``), which returns ``StoredPacket`` s that the
writer cuts into segment files and the caller may add to a ``PacketRing``; ``Recordings``
answers what was recorded when, ``Retention`` deletes old video, ``write_clip`` cuts a clip.

Why this shape:

* **Stream copy only.**  Decoding 1080p costs ~1/200 s per frame here; demuxing and muxing a
  packet costs microseconds.  Nothing in this package decodes, so recording stays far below
  1 % of a core per stream (see the report numbers in the module tests / README).
* **Packets are copied to ``bytes`` the moment they arrive** (:class:`~.packets.PacketCapture`).
  The muxer takes ownership of a packet's buffer, and the decode loop that shares its packets
  with us (``writer.feed(packet, stream)``) must keep using its own; a copy of ~20 kB per
  frame is far cheaper than any coordination.
* **Timestamps are repaired once, at capture**, onto one strictly increasing timeline that
  continues across reconnects: live RTSP's first packet carries no timestamp, B-frame
  streams start without dts, and two connections have unrelated clocks.  The ring buffer
  and the segment writer then see the same clean packets.
* **Files are named after what readers need**: ``<camera>/<YYYY-MM-DD>/<HH>/<start>-<dur>.mp4``
  (UTC folders, epoch seconds with ms), so ranges, gaps and retention are answered from
  directory listings without opening a single file.  A segment is written under a
  ``.mp4.part`` name and renamed when complete, so no reader ever sees half a file.
* **Gaps are recorded, not hidden**: an append-only ``index.jsonl`` per camera and date holds
  one line per segment and one per gap (with its reason), so the UI can show *why* there is
  no video.  Retention appends ``deleted`` lines instead of rewriting the index.
"""
