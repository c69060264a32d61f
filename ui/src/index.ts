export * from './client.js';
export * from './types.js';
export { IcpmlProvider, useIcpml } from './context.js';
export { describeFactor, describeEffect, featureLabel, formatUsd, timeAgo } from './words.js';
export { ScoreBadge, type ScoreBadgeProps } from './components/ScoreBadge.js';
export { RecommendedAccounts, type RecommendedAccountsProps } from './components/RecommendedAccounts.js';
export { IntentSignalsChart, weekStart, weeklyEngagement, type IntentSignalsChartProps } from './components/IntentSignalsChart.js';
export { ModelReport, type ModelReportProps } from './components/ModelReport.js';
export { ExperimentResults, type ExperimentResultsProps } from './components/ExperimentResults.js';
