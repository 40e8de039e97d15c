/**
 * Public surface of the synthetic world for the server's tests, load tests and tools:
 * build a world, generate `/v1/rank` bodies, score them with the ground truth, label impression logs.
 */
export { kBidTypes, kEpochMs, kEvents, kMaxRequestHistory, kSurfaces, type Surface, type WorldConfig } from './config.js';
export { createWorld, type World } from './world.js';
export { advanceWorld, simulateDay } from './simulate.js';
export { generateRankRequest, scoreRequest, userHistory, type RankRequest, type RankRequestOptions, type CandidateTruth } from './requests.js';
export { expandLogLine, labelImpressions, parseLogLine, toColumns, kArms, type Arm, type ImpressionLogRecord, type LabeledImpression, type RankLogLine } from './labeler.js';
export { generate } from './generate.js';
export { auc, logLoss } from './metrics.js';
