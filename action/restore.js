'use strict';
require('./kura.js').run('restore');
