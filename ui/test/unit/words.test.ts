import { describe, expect, it } from 'vitest';
import { describeEffect, describeFactor, describeSource, featureLabel, formatUsd, timeAgo } from '../../src/words.js';

describe('factor words', () => {
  it('describes rule factors and model features in plain words', () => {
    expect(describeFactor({ factor: 'engineering_role_count', value: 3 })).toBe('Open engineering roles: 3');
    expect(describeFactor({ factor: 'engineering_roles', value: 12 })).toBe('Open engineering roles: 12');
    expect(describeFactor({ factor: 'has_engineering_blog', value: false })).toBe('No engineering blog');
    expect(describeFactor({ factor: 'open_engineering_roles', value: true })).toBe('Hiring engineers now');
    expect(describeFactor({ factor: 'industry', value: 'devtools' })).toBe('Industry: devtools');
    expect(describeFactor({ factor: 'company_size', value: 1240 })).toBe('Company size: 1,240 employees');
    expect(describeFactor({ factor: 'funding_amount_usd', value: 12_000_000 })).toBe('Last round raised $12M');
    expect(describeFactor({ factor: 'tech_stack_alignment', value: ['go', 'rust'] })).toBe('Tech stack: go, rust');
  });
  it('reads a model date feature as an age in days', () => {
    expect(describeFactor({ factor: 'funding_date', value: 129.8 })).toBe('Last funding round 4 months ago');
    expect(describeFactor({ factor: 'researched_at', value: 12 })).toBe('Last researched 12 days ago');
  });
  it('says "unknown" for missing inputs instead of "null"', () => {
    expect(describeFactor({ factor: 'company_size', value: null })).toBe('Company size: unknown');
    expect(describeFactor({ factor: 'funding_date', value: null })).toBe('No known funding round');
    expect(describeFactor({ factor: 'tech_stack=go', value: null })).toBe('Uses go: unknown');
    expect(describeFactor({ factor: 'some_custom_column', value: undefined })).toBe('Some custom column: unknown');
  });
  it('names technologies and unknown columns', () => {
    expect(describeFactor({ factor: 'tech_stack=aws', value: 1 })).toBe('Uses aws');
    expect(describeFactor({ factor: 'tech_stack=aws', value: 0 })).toBe('Does not use aws');
    expect(describeFactor({ factor: 'arr_band', value: 'b' })).toBe('Arr band: b');
    expect(featureLabel('tech_stack=postgresql')).toBe('Uses postgresql');
    expect(featureLabel('engineering_role_count')).toBe('Open engineering roles');
  });
  it('describes the direction and strength of a contribution', () => {
    expect(describeEffect(0.9)).toBe('strongly raises the fit');
    expect(describeEffect(0.3)).toBe('raises the fit');
    expect(describeEffect(-0.05)).toBe('slightly lowers the fit');
  });
  it('formats sources, money and ages', () => {
    expect(describeSource('rules', null)).toBe('rule-based score');
    expect(describeSource('xgboost', 3)).toBe('model v3');
    expect(describeSource(null, null)).toBe('no score');
    expect(formatUsd('850000')).toBe('$850k');
    expect(formatUsd(3_200_000_000)).toBe('$3.2B');
    expect(timeAgo('2026-01-01', new Date('2026-01-11T00:00:00Z'))).toBe('10 days ago');
  });
});
