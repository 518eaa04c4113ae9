// Lint: typescript-eslint's strict, type-checked rules over the product, its tests, benches and demo.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.peers/', '.demo/', 'openapi/', 'bench/results/', '**/*.mjs', '**/*.js'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // Numbers and booleans read naturally in messages; objects and undefined still may not.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      // `() => void x()` and `(r) => resolve(r)` are the idiom for callbacks; a void value used as a value is still caught.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true, ignoreVoidOperator: true }],
      // Type narrowing does not see a field change across an await, so this reports exactly the
      // checks that stop work once a stop() ran meanwhile (`if (this.stopped) return` after an await).
      '@typescript-eslint/no-unnecessary-condition': 'off',
      // fastify plugins and hooks are async by contract, whether or not their body awaits.
      '@typescript-eslint/require-await': 'off',
      // A variable a callback reads before the one assignment that follows (a server and its handler).
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // Every rejection here is an Error (etcd3, the AWS and GCS SDKs, fs); `(err: Error)` in a catch
      // callback says so once instead of a cast at each use.
      '@typescript-eslint/use-unknown-in-catch-callback-variable': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true, caughtErrors: 'none' }],
      // node:test's describe/it return promises the runner awaits itself.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }] },
      ],
    },
  },
  {
    // Tests, benches and the demo read JSON bodies and child-process output they then assert on.
    files: ['test/**', 'bench/**', 'demo/**', 'scripts/**'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      // `return t.skip(why)` and `return void reject(err)` end a test or a callback in one line.
      '@typescript-eslint/no-confusing-void-expression': 'off',
      '@typescript-eslint/no-meaningless-void-operator': 'off',
      // getJson<T>(url) names what the test expects to read.
      '@typescript-eslint/no-unnecessary-type-parameters': 'off',
      '@typescript-eslint/no-redundant-type-constituents': 'off',
    },
  },
);
