-- Each channel is claimed from a queue of its own, oldest due first: this index lists the
-- channels with pending effects one seek at a time and reads each channel's queue in order,
-- so a claim never walks the effects of the other channels.
CREATE INDEX effects_by_channel ON effects (status, channel, next_at, seq);

-- When a person last put a dead or cancelled effect back in line: its retry budget counts
-- from the latest of its due time, its creation and this.
ALTER TABLE effects ADD COLUMN retried_at BIGINT;
