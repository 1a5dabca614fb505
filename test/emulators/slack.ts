export * from '../../src/sandbox/emulators/slack';
