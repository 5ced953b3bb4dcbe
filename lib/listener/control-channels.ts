/** The channels a listener LISTENs on besides its own: orders to every running listener. */

/** Channel on which `recover()` asks every running listener to drain now. */
export const RECOVER_CHANNEL = 'pgpubsub_recover';
/** Channel on which a pause or resume (admin.pause/resume) tells every running listener to read the paused channels again. */
export const PAUSE_CHANNEL = 'pgpubsub_pause';
