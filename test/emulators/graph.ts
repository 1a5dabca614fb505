export * from '../../src/sandbox/emulators/graph';
