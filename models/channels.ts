import { channel } from '../lib';

/** Counts post reads; broadcast to every listener, never stored. */
export interface PostRead {
  modelId: number;
  modelType?: string;
  date?: Date;
}

export const PostReads = channel<PostRead>('post_reads', { durable: false, defaults: { modelType: 'Post' } });
