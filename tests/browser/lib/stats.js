// Reads receive statistics per remote participant through the page's `window.switchyard` hook.

/**
 * Returns, for each id in `participantIds`, what the page's subscriber connection receives from
 * that participant: `{ tile, name, videoFramesDecoded, audioPacketsReceived, tracks }`.
 *
 * A track belongs to a participant when it is in that participant's tile; the client puts it
 * there by the media stream id, which the server sets to the publisher's participant id. The
 * counters come from `subscriber.getStats(track)`, summed over the participant's tracks.
 */
export function readReceiveStats(page, participantIds) {
  return page.evaluate(async (participantIds) => {
    const hook = window.switchyard;
    const subscriber = hook.subscriber;
    const tiles = hook.tiles;
    const result = {};

    for (const id of participantIds) {
      const tile = tiles.get(id);
      const entry = {
        tile: Boolean(tile),
        name: tile?.element.querySelector('.name')?.textContent ?? null,
        videoFramesDecoded: 0,
        audioPacketsReceived: 0,
        tracks: [],
      };
      result[id] = entry;
      if (!tile || !subscriber) {
        continue;
      }

      for (const track of tile.stream.getTracks()) {
        entry.tracks.push(track.kind);
        const report = await subscriber.getStats(track);
        report.forEach((stats) => {
          if (stats.type !== 'inbound-rtp') {
            return;
          }
          if (stats.kind === 'video') {
            entry.videoFramesDecoded += stats.framesDecoded ?? 0;
          } else if (stats.kind === 'audio') {
            entry.audioPacketsReceived += stats.packetsReceived ?? 0;
          }
        });
      }
    }
    return result;
  }, participantIds);
}
